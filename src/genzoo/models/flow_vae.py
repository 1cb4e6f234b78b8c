"""VAE with planar normalizing flows — Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows".

The Gaussian posterior sample z0 ~ q0(z|x) = N(mean, diag σ²) is pushed through K planar maps
    f(z) = z + û h(wᵀz + b),  h = tanh,  log|det ∂f/∂z| = log|1 + h'(wᵀz + b) ûᵀw|,
so q_K(z_K|x) can be skewed and multimodal, and the bound (the negative of the paper's free energy) is
    ELBO = E_q0[ log p(x|z_K) + log p(z_K) − log q0(z0) + Σ_k log|det ∂f_k/∂z| ].
As in the paper the flow is amortized: the encoder outputs (u, w, b) of every flow for each image beside the
mean and log-variance. Invertibility needs wᵀû ≥ −1 (the paper's appendix): û = u + (m(wᵀu) − wᵀu) w/‖w‖² with
m(a) = −1 + softplus(a) gives wᵀû = m(wᵀu) > −1, hence the log-det is log1p(h'·m) with h' = 1 − tanh² ∈ (0, 1].
The KL estimate is KL(q0‖p) in closed form plus log p(z0) − log p(z_K) − Σ log det, which has the same
expectation as log q_K(z_K) − log p(z_K) and with K = 0 is exactly the VAE's (genzoo.models.vae) ELBO.
The paper's MNIST model: 40 latents, 400 maxout hidden units, RMSprop (lr 1e-5, momentum 0.9) for
500k updates, the annealed bound β_t·log p(x, z_K) with β from 0.01 to 1 over 10000 updates; its test NLL for
K = 10 / 20 / 40 / 80 is in its Table 2 (the anchors: src/genzoo/targets.yaml). Ours by default: ReLU layers, Adam, and
the KL weight warmed up from `kl_warmup_start` to 1 by our VAE's code (Sønderby et al. 2016); the paper's pieces are
options (`activation: maxout`, `optimizer: rmsprop`, `anneal: joint`: the paper recipe in pipeline/conf/recipes.yaml).
Keep our warm-up short: while the KL weight is small the maps' tanh saturate (`saturated` in the validation
metrics) and stay so, which leaves dead flows (metrics/probes/flow_vae_gpu_recipe/). Scored, like the VAE, by the
IWAE bound with weights p(x, z_K) / q_K(z_K|x), log q_K(z_K|x) = log q0(z0) − Σ log det.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genzoo.models.base import ZooModel
from genzoo.models.blocks import LOG_2PI, OPTIMIZERS, binarize, elbo_step, iwae_bound, maxout_mlp, mlp, optimizer
from genzoo.params import TrainConfig, param


def constrain(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """û with wᵀû = m(wᵀu) = −1 + softplus(wᵀu) > −1 (the map stays invertible), and m. u, w: (..., L)."""
    wu = (w * u).sum(-1)
    m = F.softplus(wu) - 1
    u_hat = u + ((m - wu) / w.pow(2).sum(-1)).unsqueeze(-1) * w
    return u_hat, m


def planar_map(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor,
               b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(z) = z + û tanh(wᵀz + b) and h = tanh(wᵀz + b). z: (..., B, L); û, w: (B, L); b: (B,)."""
    h = torch.tanh((z * w).sum(-1) + b)  # (..., B)
    return torch.addcmul(z, u_hat, h.unsqueeze(-1)), h


def planar_log_det(h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """log|det ∂f/∂z| = log(1 + tanh'(·) wᵀû) with tanh' = 1 − h² ∈ (0, 1] and m = wᵀû > −1, so the argument of
    log1p is > −1; the clamp only guards rounding when m underflows to −1."""
    return torch.log1p(((1 - h.pow(2)) * m).clamp(min=-1 + 1e-6))


def planar_flow(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One planar map: f(z) (..., B, L) and its log|det ∂f/∂z| (..., B); m = wᵀû (B,)."""
    z, h = planar_map(z, u_hat, w, b)
    return z, planar_log_det(h, m)


@dataclass
class Config(TrainConfig):
    latent_dim: int = param(40, gt=0)
    hidden: list[int] = param([400, 400], gt=0)  # encoder widths; the decoder mirrors them
    flows: int = param(80, ge=0)  # K planar maps in q(z|x); 0 = the plain VAE
    kl_warmup_steps: int = param(10000, ge=0)  # KL weight ramps kl_warmup_start -> 1 over these steps; 0 = off
    kl_warmup_start: float = param(0.01, ge=0, le=1)
    anneal: str = param("kl", choices=("kl", "joint"))  # the warm-up weights the KL, or (the paper's) log p(x, z_K)
    activation: str = param("relu", choices=("relu", "maxout"))  # the paper: maxout
    pieces: int = param(2, gt=0)  # linear pieces per maxout unit (activation: maxout)
    optimizer: str = param("adam", choices=OPTIMIZERS)  # the paper: RMSProp with momentum 0.9
    momentum: float = param(0.0, ge=0, le=0.999)  # RMSProp's momentum (optimizer: rmsprop)


class Model(ZooModel):
    Config = Config
    samples = True
    likelihood = "bound"  # the IWAE bound, through the flows

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels, latent = math.prod(image_shape), config.latent_dim
        # -> mean, log-variance, then (u, w, b) of each flow: 2L + K(2L + 1) outputs per image.
        layers = mlp if config.activation == "relu" else lambda sizes: maxout_mlp(sizes, config.pieces)
        self.encoder = layers([pixels, *config.hidden, 2 * latent + config.flows * (2 * latent + 1)])
        self.decoder = layers([latent, *reversed(config.hidden), pixels])  # -> Bernoulli logits
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # on the device: CUDA-graph safe

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """mean, logvar (B, L), and the flow parameters û, w (B, K, L), b, m = wᵀû (B, K)."""
        latent, flows = self.config.latent_dim, self.config.flows
        out = self.encoder(x.flatten(1)).float()  # flows run in fp32 even under bf16 autocast
        mean, logvar, rest = out.split([latent, latent, flows * (2 * latent + 1)], dim=-1)
        u, w, b = rest.view(len(x), flows, 2 * latent + 1).split([latent, latent, 1], dim=-1)
        u_hat, m = constrain(u, w)
        return mean, logvar, (u_hat, w, b.squeeze(-1), m)

    def maps(self, z: torch.Tensor, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """z0 (..., B, L) -> z_K and every map's h = tanh(wᵀz + b), (..., B, K): the K maps in sequence."""
        u_hat, w, b, _ = params
        hs = []
        for u_k, w_k, b_k in zip(u_hat.unbind(1), w.unbind(1), b.unbind(1)):  # unbind: one stack in backward,
            z, h = planar_map(z, u_k, w_k, b_k)  # where indexing [:, k] would scatter into zeros once per flow
            hs.append(h)
        return z, torch.stack(hs, dim=-1) if hs else z.new_zeros(*z.shape[:-1], 0)

    def flow(self, z: torch.Tensor, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """z0 (..., B, L) -> z_K and Σ_k log|det| (..., B). The log-dets, which need only each map's h, are taken
        at once after the maps (fewer kernels per flow)."""
        z, h = self.maps(z, params)
        return z, planar_log_det(h, params[3]).sum(-1)  # (..., B, K) -> (..., B)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (..., pixels) logits

    def elbo(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image ELBO terms for binary images xb (B, C, H, W): log p(x|z_K), the KL estimate, Σ log det, each
        map's h (B, K), and log q_K(z_K|x) = log q0(z0) − Σ log det (the paper's annealing weights the rest)."""
        x = xb.flatten(1).float()
        mean, logvar, params = self.encode(x)
        eps = torch.randn_like(mean)
        z0 = mean + eps * (0.5 * logvar).exp()
        z, h = self.maps(z0, params)
        log_det = planar_log_det(h, params[3]).sum(-1)  # (B,)
        logits = self.decode(z).float()
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # (B,) log p(x|z_K)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1)  # (B,) KL(q0 || p), closed form
        if self.config.flows:
            kl = kl + 0.5 * (z.pow(2) - z0.pow(2)).sum(-1) - log_det  # + log p(z0) - log p(z_K) - Σ log det
        log_q = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1) - log_det  # (B,)
        return {"elbo": rec - kl, "rec": rec, "kl": kl, "log_det": log_det, "h": h, "log_q": log_q}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": optimizer(self.config.optimizer, self.parameters(), self.config.lr,
                                   momentum=self.config.momentum)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        terms = self.elbo(binarize(batch["x"]))
        out = elbo_step(self, terms, opt["model"], warmup_start=self.config.kl_warmup_start,
                        log_q=terms["log_q"] if self.config.anneal == "joint" else None)
        return {**out, "log_det": terms["log_det"].mean().detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = self.elbo(batch["xb"])
        # A map whose tanh saturates (|h| > 0.99: h' < 0.02) is a shift with log det ~ 0 and almost no gradient
        # to leave that state: the share of saturated (image, map) pairs tells a live flow from a dead one.
        h = terms["h"]  # (B, K)
        saturated = (h.abs() > 0.99).float().mean(-1) if self.config.flows else h.new_zeros(len(h))
        return {**{name: terms[name].mean() for name in ("elbo", "kl", "log_det")}, "saturated": saturated.mean()}

    @torch.no_grad()
    def log_likelihood(self, xb: torch.Tensor, k: int) -> torch.Tensor:
        """IWAE lower bound on log p(x) with k importance samples from q_K, per image (B,), in nats."""
        x = xb.flatten(1).float()  # (B, D)
        mean, logvar, params = self.encode(x)
        return iwae_bound(x, mean, logvar, k, self.decode, flow=lambda z0: self.flow(z0, params))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, device=device)
        return torch.sigmoid(self.decode(z)).view(n, *self.image_shape)  # Bernoulli means

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        mean, _, params = self.encode(x01)
        z, _ = self.flow(mean, params)  # the posterior mean pushed through the flows
        return torch.sigmoid(self.decode(z)).view(-1, *self.image_shape)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Named image grids for the report: samples and reconstructions (real, reconstruction, real, ...)."""
        real = data["test"][:50]
        pairs = torch.stack([real, self.reconstruct(real)], dim=1).flatten(0, 1)
        return {"samples": (self.sample(100), 10), "reconstructions": (pairs, 10)}
