"""Small pieces shared by the model files."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)
CHUNK_ELEMENTS = 1 << 26  # decoder outputs iwae_bound holds at once (256 MB in fp32)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class Maxout(nn.Module):
    """Goodfellow et al. 2013: each unit is the max over `pieces` linear pieces of the input."""

    def __init__(self, n_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(n_in, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (self.units, self.pieces)).amax(-1)  # (..., units)


def maxout_mlp(sizes: list[int], pieces: int) -> nn.Sequential:
    """As mlp, with maxout units of `pieces` pieces in the hidden layers and a plain linear last layer."""
    hidden = [Maxout(n_in, n_out, pieces) for n_in, n_out in zip(sizes[:-2], sizes[1:-1])]
    return nn.Sequential(*hidden, nn.Linear(sizes[-2], sizes[-1]))


def normal_init(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN's initialisation, which its successors' papers and code keep: every linear and (transposed)
    convolution weight ~ N(0, std), biases 0; BatchNorm keeps its own (weight 1, bias 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
         eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused into one kernel when the weights live on a GPU (many small tensors: launch overhead dominates)."""
    params = list(params)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps, fused=fused)


OPTIMIZERS = ("adam", "rmsprop")


def optimizer(kind: str, params, lr: float, eps: float = 1e-8, momentum: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer a config names: Adam (ours), or RMSProp, which the PixelRNN and planar-flow papers trained
    with (torch's smoothing 0.99, where both papers are silent; `momentum` is Rezende & Mohamed's 0.9)."""
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=eps, momentum=momentum)
    if kind != "adam":
        raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
    return adam(params, lr, eps=eps)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (the stored form) -> floats in [0, 1]."""
    return x.float() / 255.0


@contextmanager
def running_stats_kept_unless(module: nn.Module, on: torch.Tensor) -> Iterator[None]:
    """The running statistics of `module`'s normalization layers end the block as they began it unless `on` (a 0-d
    0/1 tensor) is 1. For a forward in training mode whose loss a weight switches off: without a branch (one CUDA
    graph for both) it would still move the statistics the model is later tested with. The block must hold the
    backward pass too: autograd keeps the statistics of every forward of the step until then."""
    norms = [m for m in module.modules() if getattr(m, "track_running_stats", False) and m.running_mean is not None]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    yield
    keep = on == 0
    with torch.no_grad():
        for m, (mean, var, count) in zip(norms, saved):
            m.running_mean.copy_(torch.where(keep, mean, m.running_mean))
            m.running_var.copy_(torch.where(keep, var, m.running_var))
            m.num_batches_tracked.copy_(torch.where(keep, count, m.num_batches_tracked))


def clip_gradients(params, limit: float, mode: str = "norm") -> None:
    """Clip the gradients' global L2 norm (or each value) to `limit`, after a distributed run's ranks have
    averaged them, so N ranks clip what one process would (genzoo.engine.distributed; a no-op averaging in a
    plain process). No host sync: the norm and the scale stay on the device."""
    from genzoo.engine.distributed import average_gradients_of

    params = [p for p in params if p.grad is not None]
    average_gradients_of(params)
    if mode == "value":
        nn.utils.clip_grad_value_(params, limit)
    else:
        nn.utils.clip_grad_norm_(params, limit)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(intensity), drawn afresh every time (Salakhutdinov & Murray)."""
    return torch.bernoulli(to_unit(x))


BINARIZATIONS = ("dynamic", "static")


def training_bits(batch: dict[str, torch.Tensor], binarization: str) -> torch.Tensor:
    """The binary images a likelihood model trains on: a fresh Bernoulli draw of "x" at every step (dynamic), or
    the one fixed draw preprocess stored as "xb" (static: the binarized MNIST of Larochelle & Murray 2011 that
    the papers' tables use, about 2 nats harder; Burda et al. 2016: 86.76 dynamic vs 88.71 static)."""
    if binarization == "static":
        return batch["xb"].float()
    return binarize(batch["x"])


def elbo_step(model: nn.Module, terms: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
              warmup_start: float = 0.0, penalty: torch.Tensor | None = None,
              log_q: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One update on the negative ELBO of the VAE family, from per-image terms {"rec": log p(x|z), "kl": KL}.

    A warm-up weight ramps from `warmup_start` to 1 over `model.config.kl_warmup_steps` (0 = off), counted in the
    `model.steps` buffer on the device so the step stays CUDA-graph safe. It weights the KL term (Sønderby et al.
    2016), or, given the per-image `log_q` = log q(z|x) of the drawn z, the whole log p(x, z): Rezende & Mohamed's
    annealed free energy log q − β log p(x, z) = β (KL − rec) + (1 − β) log q.
    The logged loss is the unweighted -ELBO, so curves with and without warm-up compare; an optional scalar
    `penalty` (already weighted) is added to what is minimised and logged on its own."""
    rec, kl = terms["rec"].mean(), terms["kl"].mean()
    weight = 1.0
    if model.config.kl_warmup_steps:
        model.steps += 1
        ramp = model.steps.float() / model.config.kl_warmup_steps
        weight = (warmup_start + (1 - warmup_start) * ramp).clamp(max=1.0)
    loss = kl * weight - rec if log_q is None else weight * (kl - rec) + (1 - weight) * log_q.mean()
    optimizer.zero_grad(set_to_none=True)
    (loss + (0 if penalty is None else penalty)).backward()
    optimizer.step()
    logs = {"loss": (kl - rec).detach(), "rec": -rec.detach(), "kl": kl.detach()}
    return logs if penalty is None else {**logs, "penalty": penalty.detach()}


def iwae_bound(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, k: int,
               decode: Callable[[torch.Tensor], torch.Tensor],
               flow: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """The importance-weighted bound of Burda et al. 2016 on log p(x), per image (B,), in nats, for the VAE family:
    k samples of the Gaussian posterior N(mean, exp(logvar)) (B, L) each, optionally pushed through `flow`
    (z0 -> (zK, log det), the posterior's density then drops by log det), a standard normal prior, and a Bernoulli
    decoder `decode` (z (k', B, L) -> logits (k', B, D)) scored on the binary x (B, D). The k samples go through
    in chunks of at most CHUNK_ELEMENTS decoder outputs, which leaves the estimator unchanged."""
    std = (0.5 * logvar).exp()
    chunk = max(1, CHUNK_ELEMENTS // (x.shape[0] * x.shape[1]))
    log_w = []
    for start in range(0, k, chunk):
        eps = torch.randn(min(chunk, k - start), *mean.shape, device=x.device)  # (k', B, L)
        z = mean + std * eps
        log_q = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)  # (k', B) log q_0(z_0|x)
        if flow is not None:
            z, log_det = flow(z)
            log_q = log_q - log_det  # log q_K(z_K|x)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        logits = decode(z).float()  # (k', B, D)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_w.append(log_px + log_prior - log_q)
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)
