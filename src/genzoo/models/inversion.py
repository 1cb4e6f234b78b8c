"""Latent inversion and walks: find z with G(z) ≈ x by gradient descent on z, batched over many images.

Shared by the report's "invert real digits, then walk between them" pictures and by AnoGAN (Schlegl et al.
2017), which inverts a whole test set at once. A VAE needs no search: its encoder mean is the code.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (generated, target) images -> (B,) per image


def mse(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error ‖G(z) - x‖² / D: the default loss of `invert`. (B, ...) -> (B,)."""
    return (generated.flatten(1).float() - target.flatten(1).float()).pow(2).mean(1)


def invert(generate: Callable[[torch.Tensor], torch.Tensor], images01: torch.Tensor, z0: torch.Tensor,
           steps: int, lr: float, clamp: tuple[float, float] | None = None,
           loss: Loss = mse) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on z for the whole batch at once: minimize each image's `loss(G(z), x)` (default: its MSE).

    `generate` maps (B, L) codes to (B, C, H, W) images in [0, 1]; only z is optimized (gradients are taken
    with respect to z alone, so the generator's weights and their .grad stay untouched). `loss` maps
    (generated, target) image batches to one loss per image (B,); AnoGAN passes its residual + discrimination
    loss. The batch's objective is the sum of the per-image losses and Adam works element-wise, so each image's
    z follows its own path and the batch size changes nothing per image, provided `generate` and `loss` treat
    images independently (eval-mode BatchNorm, no batch statistics). `clamp` keeps z inside the prior's support
    (e.g. (-1, 1) for a uniform prior). Returns (z*, per-image final loss), both detached, shapes (B, L), (B,).
    """
    target = images01.detach().float()
    z = z0.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            per_image = loss(generate(z), target)  # (B,)
            (grad,) = torch.autograd.grad(per_image.sum(), [z])
            z.grad = grad
            opt.step()
            if clamp is not None:
                with torch.no_grad():
                    z.clamp_(*clamp)
    with torch.no_grad():
        final = loss(generate(z), target).float()
    return z.detach(), final


def interpolate(z_a: torch.Tensor, z_b: torch.Tensor, steps: int) -> torch.Tensor:
    """Straight lines from z_a to z_b, both ends included: (..., L) pairs -> (..., steps, L)."""
    t = torch.linspace(0, 1, steps, device=z_a.device, dtype=z_a.dtype).view(steps, 1)
    return torch.lerp(z_a.unsqueeze(-2), z_b.unsqueeze(-2), t)  # lerp is exact at t = 0 and t = 1


def interpolation_grid(model: nn.Module, pairs: torch.Tensor, steps: int = 8, inversion_steps: int = 200,
                       lr: float = 0.05) -> torch.Tensor:
    """Invert real pairs (P, 2, C, H, W) in [0, 1], then walk between their codes.

    Returns (P * (steps + 2), C, H, W): per row, real a, the `steps` decoded points from ẑ_a to ẑ_b, real b
    (show it with nrow = steps + 2). A model with `encode` (the VAE) uses its encoder mean and decodes Bernoulli
    means; a GAN (`generate`, `noise`, `noise_bounds`) is inverted from a random start with `invert`.
    """
    p = pairs.shape[0]
    real = pairs.flatten(0, 1)  # (2P, C, H, W): a0, b0, a1, b1, ...
    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "encode"):
            with torch.no_grad():
                z, _ = model.encode(real)

            def decode(codes: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(model.decode(codes)).view(-1, *model.image_shape)
        else:
            decode = model.generate
            z, _ = invert(decode, real, model.noise(len(real)), inversion_steps, lr,
                          getattr(model, "noise_bounds", None))
        z = z.view(p, 2, -1)
        with torch.no_grad():
            walk = decode(interpolate(z[:, 0], z[:, 1], steps).flatten(0, 1)).view(p, steps, *real.shape[1:])
    finally:
        model.train(was_training)
    return torch.cat([pairs[:, :1], walk, pairs[:, 1:]], dim=1).flatten(0, 1)
