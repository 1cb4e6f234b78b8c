"""Variational autoencoder — Kingma & Welling 2014, "Auto-Encoding Variational Bayes".

Gaussian encoder q(z|x), standard normal prior, Bernoulli decoder p(x|z) over binarized pixels (drawn afresh
each step, or the one static draw of the papers' tables: `binarization`).
Trained on the ELBO with the reparameterization trick; scored by the importance-weighted bound of Burda et al.
2016, log p(x) >= E[log 1/k sum_i p(x, z_i) / q(z_i|x)], which tightens to log p(x) as k grows (k = 5000 for
the paper-comparable test NLL; its paper anchor and target are in src/genzoo/targets.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genzoo.models.base import ZooModel
from genzoo.models.blocks import BINARIZATIONS, adam, elbo_step, iwae_bound, mlp, training_bits
from genzoo.models.inversion import interpolation_grid
from genzoo.params import TrainConfig, param

ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}


@dataclass
class Config(TrainConfig):
    latent_dim: int = param(20, gt=0)
    hidden: list[int] = param([400], gt=0)  # encoder widths; the decoder mirrors them
    kl_warmup_steps: int = param(0, ge=0)  # KL weight ramps 0 -> 1 over these steps (Sønderby et al. 2016); 0 = off
    activation: str = param("relu", choices=tuple(ACTIVATIONS))  # Burda et al. 2016's nets: tanh
    binarization: str = param("dynamic", choices=BINARIZATIONS)  # static: the papers' one fixed draw (blocks.py)
    adam_eps: float = param(1e-8, gt=0)  # Burda et al. 2016: 1e-4


class Model(ZooModel):
    Config = Config
    samples = True
    likelihood = "bound"  # the IWAE bound

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels = math.prod(image_shape)
        act = ACTIVATIONS[config.activation]
        self.encoder = mlp([pixels, *config.hidden, 2 * config.latent_dim], act)  # -> (mean, log-variance)
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden), pixels], act)  # -> Bernoulli logits
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # on the device: CUDA-graph safe

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x.flatten(1)).chunk(2, dim=-1)  # (B, L) each
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (..., pixels) logits

    def elbo(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image ELBO terms for binary images xb (B, C, H, W): reconstruction log-likelihood and KL."""
        x = xb.flatten(1).float()
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.decode(z).float()
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # (B,) log p(x|z)
        kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(-1)  # (B,) KL(q || p)
        return {"elbo": rec - kl, "rec": rec, "kl": kl}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr, eps=self.config.adam_eps)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        return elbo_step(self, self.elbo(training_bits(batch, self.config.binarization)), opt["model"])

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = self.elbo(batch["xb"])
        return {"elbo": terms["elbo"].mean(), "kl": terms["kl"].mean()}

    @torch.no_grad()
    def log_likelihood(self, xb: torch.Tensor, k: int) -> torch.Tensor:
        """IWAE lower bound on log p(x) with k importance samples, per image (B,), in nats."""
        x = xb.flatten(1).float()  # (B, D)
        mean, logvar = self.encode(x)
        return iwae_bound(x, mean, logvar, k, self.decode)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, device=device)
        return torch.sigmoid(self.decode(z)).view(n, *self.image_shape)  # Bernoulli means

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        mean, _ = self.encode(x01)
        return torch.sigmoid(self.decode(mean)).view(-1, *self.image_shape)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Named image grids for the report: samples, reconstructions, walks between encoded real digits and, for
        a 2-D latent, the manifold."""
        grids = {"samples": (self.sample(100), 10)}
        real = data["test"][:50]
        pairs = torch.stack([real, self.reconstruct(real)], dim=1).flatten(0, 1)  # real, recon, real, ...
        grids["reconstructions"] = (pairs, 10)
        walk_ends = data["test"][:8].view(4, 2, *self.image_shape)  # encoder means of real pairs, decoded in between
        grids["inverted_interpolation"] = (interpolation_grid(self, walk_ends, steps=8), 10)
        if self.config.latent_dim == 2:
            ticks = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, 20))
            z = torch.cartesian_prod(ticks, ticks).flip(-1).to(real.device)  # rows vary z2, columns z1
            grids["manifold"] = (torch.sigmoid(self.decode(z)).view(-1, *self.image_shape), 20)
        return grids
