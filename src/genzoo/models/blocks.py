"""Small pieces shared by the model files."""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused into one kernel when the weights live on a GPU (many small tensors: launch overhead dominates)."""
    params = list(params)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (the stored form) -> floats in [0, 1]."""
    return x.float() / 255.0


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(intensity), drawn afresh every time (Salakhutdinov & Murray)."""
    return torch.bernoulli(to_unit(x))


def elbo_step(model: nn.Module, terms: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
              warmup_start: float = 0.0) -> dict[str, torch.Tensor]:
    """One update on the negative ELBO of the VAE family, from per-image terms {"rec": log p(x|z), "kl": KL}.

    The KL term is weighted by a ramp from `warmup_start` to 1 over `model.config.kl_warmup_steps` (Sønderby et
    al. 2016; 0 = off), counted in the `model.steps` buffer on the device so the step stays CUDA-graph safe.
    The logged loss is the unweighted -ELBO, so curves with and without warm-up compare."""
    rec, kl = terms["rec"].mean(), terms["kl"].mean()
    weight = 1.0
    if model.config.kl_warmup_steps:
        model.steps += 1
        ramp = model.steps.float() / model.config.kl_warmup_steps
        weight = (warmup_start + (1 - warmup_start) * ramp).clamp(max=1.0)
    optimizer.zero_grad(set_to_none=True)
    (kl * weight - rec).backward()
    optimizer.step()
    return {"loss": (kl - rec).detach(), "rec": -rec.detach(), "kl": kl.detach()}
