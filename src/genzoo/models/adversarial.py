"""Pieces every GAN here shares: the adversarial losses, the latent prior, freezing D, and the report pictures.

Losses take D's logits (BCE-with-logits forms, stable where D saturates). With D(x) = sigmoid(logit):
    D maximizes  log D(x) + log(1 - D(G(z)))        -> loss_d = mean BCE over the real and the fake examples
    G minimizes  log(1 - D(G(z)))   ("minimax")     -> flat where D confidently rejects fakes (early on)
           or  - log D(G(z))        ("non_saturating", Goodfellow et al. 2014, §3: same fixed point, strong
                                     gradients early)
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.blocks import to_unit

G_LOSSES = ("non_saturating", "minimax")
NOISES = ("uniform", "normal", "uniform_sqrt3", "uniform01")  # U(-1, 1), N(0, I), U(-√3, √3) (unit variance: the
# 2014 code's), U(0, 1) (Theano's default range: the Triple-GAN script's)
UPDATES = ("alternating", "simultaneous")  # Algorithm 1's D-then-G order, or both from the same weights at once
NEAREST_CHUNK_ELEMENTS = 1 << 24  # training pixels compared at once by nearest_neighbours (64 MB in fp32)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-(log D(x) + log(1 - D(G(z)))) / 2: the mean BCE over the 2m examples (the 2014 code's d_obj)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "minimax":  # log(1 - D(G(z))) = -BCE(logit, 0)
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))  # -log D(G(z))


def draw_noise(n: int, dim: int, kind: str, device: torch.device) -> torch.Tensor:
    """z ~ N(0, I) or uniform in the box of noise_bounds(kind), from torch's default generator on the device
    (CUDA-graph safe)."""
    if kind == "normal":
        return torch.randn(n, dim, device=device)
    low, high = noise_bounds(kind)
    return torch.rand(n, dim, device=device) * (high - low) + low


def noise_bounds(kind: str) -> tuple[float, float] | None:
    """The box the prior lives in (inversion clamps z to it), or None for an unbounded prior. U(-√3, √3) has
    variance 1, as N(0, I) has."""
    if kind == "uniform":
        return (-1.0, 1.0)
    if kind == "uniform_sqrt3":
        return (-math.sqrt(3), math.sqrt(3))
    if kind == "uniform01":
        return (0.0, 1.0)
    return None


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradient reaches `module`'s parameters inside (G's step: D passes gradients through, learns nothing)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def grad_norm(params) -> torch.Tensor:
    """Global L2 norm of the gradients, on the device (no sync): shows the minimax loss saturating. A distributed
    run measures the ranks' averaged gradients, as one process would (genzoo.engine.distributed)."""
    from genzoo.engine.distributed import average_gradients_of

    params = [p for p in params if p.grad is not None]
    average_gradients_of(params)
    grads = [p.grad for p in params]
    return torch.nn.utils.get_total_norm(grads).detach()


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode inside (BatchNorm running statistics, no dropout), the previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def alternating_step(model: nn.Module, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
    """Algorithm 1 of Goodfellow et al. 2014 for a model with gen, disc, generate(z), criticize(x01), noise(n)
    and config.{d_steps, g_loss}: k updates of D, each on its own real minibatch and fresh fakes (G's output
    detached), then one update of G through a frozen D (D passes gradients on, receives none, is not stepped).
    Real and fake go through D as separate batches, so a BatchNorm in D normalizes each on its own."""
    reals = to_unit(batch["x"]).chunk(model.config.d_steps)  # k real minibatches of m images
    for real_x in reals:
        fake_x = model.generate(model.noise(len(real_x))).detach()
        real_logits, fake_logits = model.criticize(real_x), model.criticize(fake_x)
        loss_d = d_loss(real_logits, fake_logits)
        opt["disc"].zero_grad(set_to_none=True)
        loss_d.backward()
        opt["disc"].step()
    with frozen(model.disc):
        loss_g = g_loss(model.criticize(model.generate(model.noise(len(reals[0])))), model.config.g_loss)
        opt["gen"].zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g = grad_norm(model.gen.parameters())
        opt["gen"].step()
    d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()  # at the last D step
    return {"loss_d": loss_d.detach(), "loss_g_adv": loss_g.detach(), "grad_norm_g": grad_norm_g,
            "d_real": d_real.detach(), "d_fake": d_fake.detach()}


def simultaneous_step(model: nn.Module, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
    """The update of the 2014 authors' code (goodfeli/adversarial, mnist.yaml) for the same kind of model, k = 1:
    one real minibatch and one G(z), both gradients taken at the current weights, then both optimizers step. D's
    loss reaches D's weights alone (as if the fakes were detached); G's non-saturating (or minimax) loss reaches
    G's alone, through D at its pre-update weights. One pass of D over the fakes serves both losses (the same
    dropout masks: our choice)."""
    real_x = to_unit(batch["x"])
    fake_x = model.generate(model.noise(len(real_x)))
    real_logits, fake_logits = model.criticize(real_x), model.criticize(fake_x)
    loss_d = d_loss(real_logits, fake_logits)
    loss_g = g_loss(fake_logits, model.config.g_loss)
    opt["disc"].zero_grad(set_to_none=True)
    opt["gen"].zero_grad(set_to_none=True)
    loss_d.backward(inputs=list(model.disc.parameters()), retain_graph=True)  # D's gradient: D's loss alone
    loss_g.backward(inputs=list(model.gen.parameters()))  # G's: G's loss alone, through D as it is now
    grad_norm_g = grad_norm(model.gen.parameters())
    opt["disc"].step()
    opt["gen"].step()
    d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
    return {"loss_d": loss_d.detach(), "loss_g_adv": loss_g.detach(), "grad_norm_g": grad_norm_g,
            "d_real": d_real.detach(), "d_fake": d_fake.detach()}


@torch.no_grad()
def validate_critic(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """D's mean verdict on held-out real digits and on fresh samples, and its loss on them."""
    real_logits = model.criticize(to_unit(batch["x"]))
    fake_logits = model.criticize(model.generate(model.noise(len(batch["x"]))))
    return {"d_real": torch.sigmoid(real_logits).mean(), "d_fake": torch.sigmoid(fake_logits).mean(),
            "loss_d": d_loss(real_logits, fake_logits)}


@torch.no_grad()
def nearest_neighbours(images01: torch.Tensor, train_uint8: torch.Tensor) -> torch.Tensor:
    """For each image, its nearest training image in pixel space (L2), searched in chunks over the whole split."""
    x = images01.flatten(1).float()  # (N, D)
    x_sq = x.pow(2).sum(1, keepdim=True)  # (N, 1)
    chunk = max(1, NEAREST_CHUNK_ELEMENTS // x.shape[1])
    best_dist = torch.full((len(x),), math.inf, device=x.device)
    best_idx = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for start in range(0, len(train_uint8), chunk):
        t = train_uint8[start:start + chunk].flatten(1).float().to(x.device) / 255.0  # (T, D)
        dist = x_sq - 2 * x @ t.T + t.pow(2).sum(1)  # (N, T) squared distances
        d, i = dist.min(dim=1)
        better = d < best_dist
        best_dist = torch.where(better, d, best_dist)
        best_idx = torch.where(better, i + start, best_idx)
    return train_uint8[best_idx].float().to(x.device).view_as(images01) / 255.0


@torch.no_grad()
def gan_pictures(model: nn.Module, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
    """Samples; samples beside their nearest training digit (memorization shows as twins); walks in z between
    random codes (rows: pairs, columns: steps); walks between pairs of real test digits inverted into z."""
    from genzoo.models.inversion import interpolate, interpolation_grid

    with evaluating(model):
        samples = model.sample(100)
        pairs = torch.stack([samples[:50], nearest_neighbours(samples[:50], data["train"])], 1).flatten(0, 1)
        z = model.noise(16).view(8, 2, -1)
        walk = interpolate(z[:, 0], z[:, 1], 10).flatten(0, 1)  # (8 * 10, L)
        grids = {"samples": (samples, 10), "nearest": (pairs, 10), "interpolation": (model.generate(walk), 10)}
        real = data["test"][:8].view(4, 2, *model.image_shape)
        grids["inverted_interpolation"] = (interpolation_grid(model, real, steps=8), 10)
    return grids


class GeneratorDiscriminatorPair:
    """The contract methods every noise-to-image GAN here shares. A model file mixes it into its nn.Module and
    supplies `gen`, `disc`, `generate(z)`, `criticize(x01)`, `configure_optimizers()` and a config with
    noise_dim, noise, d_steps and g_loss."""

    def noise(self, n: int) -> torch.Tensor:
        return draw_noise(n, self.config.noise_dim, self.config.noise, next(self.parameters()).device)

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        return alternating_step(self, batch, opt)

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return validate_critic(self, batch)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.generate(self.noise(n))  # (n, C, H, W) in [0, 1]

    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        return gan_pictures(self, data)
