"""Conditional variational autoencoder — Sohn, Lee & Yan 2015, "Learning Structured Output Representation using
Deep Conditional Generative Models" (NeurIPS 2015), in the class-conditional form of Kingma et al. 2014
("Semi-Supervised Learning with Deep Generative Models", model M2 with the label observed).

The condition is the one-hot label y, concatenated to the input of both networks: encoder q(z|x,y), Bernoulli
decoder p(x|z,y). Sohn et al. also learn a prior network p(z|y); here the prior is fixed to N(0, I), because a
y-independent prior is what makes the label swap meaningful: y comes for free, so the KL term pushes the digit
identity out of z and leaves z with the style (slant, thickness), which then carries over to any other label.
That push is weak (identity in z costs at most log K nats of KL), so early in training z still carries the digit
and prior draws decoded with a label often show another one; the label agreement grows with training and falls
with the latent size (docs/notes/model-history.md). Trained on the conditional ELBO over dynamically binarized x; scored by the importance-weighted bound on
log p(x|y) (Burda et al. 2016) and by how often the frozen evaluator reads the requested label in a sample.

`label_mmd_weight` > 0 (not in Sohn et al.) speeds that push up: it adds, for each label in the batch, the MMD
between that label's codes and N(0, I) draws. It is InfoVAE's MMD term (Zhao et al. 2017) taken per label, the way
the Variational Fair Autoencoder (Louizos et al. 2016) removes a known factor from z. The ELBO itself already
favours every q(z|y) equal to the prior (identity in z is wasted KL, since the decoder gets y), so the term
pushes the same way, only harder; it costs likelihood while the networks are small and briefly trained (the cpu
profile's sweep: cpu.yaml and docs/notes/model-history.md).

The evaluate stage's likelihood calls pass images only, so this model deliberately has no `elbo(x)` or
`log_likelihood(x, k)`: its conditional versions take the label too, and `extra_scores` reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, binarize, elbo_step, iwae_bound, mlp
from genzoo.params import TrainConfig, param

SAMPLES_PER_CLASS = 1000  # label agreement: 10k conditional samples for MNIST
FIRST_SWAP_CLASS = 3  # the label-swap grid starts with a 3, as the seed does


@dataclass
class Config(TrainConfig):
    latent_dim: int = param(50, gt=0)
    hidden: list[int] = param([500], gt=0)  # encoder widths; the decoder mirrors them
    kl_warmup_steps: int = param(0, ge=0)  # KL weight ramps 0 -> 1 over these steps (Sønderby et al. 2016); 0 = off
    label_mmd_weight: float = param(0.0, ge=0)  # weight of the per-label MMD(q(z|y), N(0, I)) term; 0 = the paper's
    # extra_scores is not handed the evaluate section, so the size of the conditional NLL lives here
    eval_k: int = param(5000, gt=0)  # importance samples of the conditional test NLL (extra_scores)
    eval_images: int = param(0, ge=0)  # test images it scores; 0 = all


def imq_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inverse multiquadratic kernel C / (C + |a - b|²), C = 2L (Tolstikhin et al. 2018's choice for an L-dim
    standard normal): heavy tails keep a gradient on codes far from the prior, where a Gaussian kernel has none."""
    scale = 2.0 * a.shape[-1]
    return scale / (scale + torch.cdist(a, b).pow(2))


def label_mmd(z: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """Mean over the labels in the batch of the unbiased MMD² between the codes of that label and as many fresh
    N(0, I) draws: 0 when every label's codes follow the prior, i.e. when z holds no trace of the label.

    z (B, L) posterior samples, one_hot (B, K). Masks instead of boolean indexing, so the shapes never depend on
    the labels (CUDA-graph safe); a label with fewer than two codes in the batch is left out."""
    prior = torch.randn_like(z)  # (B, L): B draws, shared by every label
    eye = torch.eye(len(z), device=z.device, dtype=z.dtype)
    k_zz, k_pp, k_zp = imq_kernel(z, z) * (1 - eye), imq_kernel(prior, prior) * (1 - eye), imq_kernel(z, prior)
    m = one_hot.to(z.dtype)  # (B, K)
    n = m.sum(0)  # (K,) codes per label
    pairs = (n * (n - 1)).clamp(min=1)
    within_z = (m * (k_zz @ m)).sum(0) / pairs  # (K,) mean kernel between two codes of the same label
    within_p = k_pp.sum() / (len(z) * (len(z) - 1))  # mean kernel between two prior draws
    across = (m * k_zp.mean(1, keepdim=True)).sum(0) / n.clamp(min=1)  # (K,) mean kernel code vs prior draw
    present = (n >= 2).to(z.dtype)
    return ((within_z + within_p - 2 * across) * present).sum() / present.sum().clamp(min=1)


class Model(ZooModel):
    Config = Config
    samples = True
    conditional = True  # its conditional NLL and label agreement are its extra_scores

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels = math.prod(image_shape)
        self.encoder = mlp([pixels + num_classes, *config.hidden, 2 * config.latent_dim])  # -> (mean, log-var)
        self.decoder = mlp([config.latent_dim + num_classes, *reversed(config.hidden), pixels])  # -> logits
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # on the device: CUDA-graph safe

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        """(...,) labels -> (..., K) one-hot, elementwise (no range check, so no host sync in a CUDA graph)."""
        return (y[..., None] == torch.arange(self.num_classes, device=y.device)).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(torch.cat([x.flatten(1).float(), self.one_hot(y)], -1)).chunk(2, dim=-1)
        return mean, logvar  # (B, L) each

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z (..., L) and labels y broadcastable to z's leading shape -> (..., pixels) Bernoulli logits."""
        label = self.one_hot(y).to(z.dtype).expand(*z.shape[:-1], self.num_classes)
        return self.decoder(torch.cat([z, label], -1))

    def elbo_given(self, xb: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image terms of the conditional ELBO on log p(x|y) for binary images xb (B, C, H, W)."""
        x = xb.flatten(1).float()
        mean, logvar = self.encode(x, y)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.decode(z, y).float()
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # (B,) log p(x|z,y)
        kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(-1)  # (B,) KL(q || N(0,I))
        return {"elbo": rec - kl, "rec": rec, "kl": kl, "z": z}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        terms = self.elbo_given(binarize(batch["x"]), batch["y"])
        weight = self.config.label_mmd_weight
        penalty = weight * label_mmd(terms["z"].float(), self.one_hot(batch["y"])) if weight else None  # fp32 kernels
        return elbo_step(self, terms, opt["model"], penalty=penalty)

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = self.elbo_given(batch["xb"], batch["y"])
        return {"elbo": terms["elbo"].mean(), "kl": terms["kl"].mean()}

    @torch.no_grad()
    def log_likelihood_given(self, xb: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """IWAE lower bound on log p(x|y) with k importance samples, per image (B,), in nats."""
        x = xb.flatten(1).float()  # (B, D)
        mean, logvar = self.encode(x, y)
        return iwae_bound(x, mean, logvar, k, lambda z: self.decode(z, y))

    @torch.no_grad()
    def sample_given(self, y: torch.Tensor) -> torch.Tensor:
        """One sample per label in y (N,): (N, C, H, W) Bernoulli means in [0, 1]."""
        z = torch.randn(len(y), self.config.latent_dim, device=self.steps.device)
        return torch.sigmoid(self.decode(z, y.to(z.device))).view(len(y), *self.image_shape)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Labels cycle 0, 1, ..., K-1, 0, ...: unconditional metrics see a balanced mix of classes."""
        return self.sample_given(torch.arange(n, device=self.steps.device) % self.num_classes)

    @torch.no_grad()
    def swap_labels(self, x01: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Encode each image with its own label, decode the posterior mean with every label: (B, K, C, H, W)."""
        mean, _ = self.encode(x01, y)  # (B, L)
        labels = torch.arange(self.num_classes, device=mean.device)
        logits = self.decode(mean[:, None, :].expand(-1, self.num_classes, -1), labels)  # (B, K, D)
        return torch.sigmoid(logits).view(len(x01), self.num_classes, *self.image_shape)

    @torch.no_grad()
    def extra_scores(self, data: dict, evaluator) -> dict[str, float]:
        """Conditional test NLL (IWAE bound, nats) and the evaluator's agreement with the requested label."""
        test, cfg = data["test"], self.config
        n = len(test["xb"]) if cfg.eval_images == 0 else min(cfg.eval_images, len(test["xb"]))
        step = max(1, min(100, n))
        log_p = torch.cat([self.log_likelihood_given(test["xb"][i:i + step], test["y"][i:i + step], cfg.eval_k)
                           for i in range(0, n, step)]).double()
        return {"test_conditional_nll": float(-log_p.mean()),
                "test_conditional_nll_stderr": float(log_p.std() / math.sqrt(n)) if n > 1 else 0.0,
                "conditional_nll_k": cfg.eval_k, "conditional_nll_images": n, **self.label_agreement(evaluator)}

    @torch.no_grad()
    def label_agreement(self, evaluator) -> dict[str, float]:
        """How often the evaluator reads the asked label in SAMPLES_PER_CLASS prior samples of each class (over
        all, and in the worst class). Reads no data: a recipe can be chosen on it (pipeline/
        cvae_mmd_on_validation.py)."""
        labels = torch.arange(self.num_classes * SAMPLES_PER_CLASS, device=self.steps.device) % self.num_classes
        hits = torch.cat([evaluator.predict(self.sample_given(labels[i:i + 500])) == labels[i:i + 500]
                          for i in range(0, len(labels), 500)]).double()
        per_class = torch.stack([hits[labels == c].mean() for c in range(self.num_classes)])
        return {"label_agreement": float(hits.mean()), "label_agreement_worst_class": float(per_class.min())}

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """label_swap: a row per real test digit (a 3 first, then one of each other class): the input, then its
        style decoded with labels 0..K-1. samples_by_class: row c holds class c; each column shares one z."""
        grids = {}
        y = data["test_y"]
        order = [FIRST_SWAP_CLASS, *(c for c in range(self.num_classes) if c != FIRST_SWAP_CLASS)]
        rows = [int((y == c).nonzero()[0]) for c in order if (y == c).any()]
        if rows:
            rows = torch.tensor(rows, device=y.device)
            real = data["test"][rows]
            swapped = self.swap_labels(real, y[rows])  # (R, K, C, H, W)
            grids["label_swap"] = (torch.cat([real[:, None], swapped], 1).flatten(0, 1), self.num_classes + 1)
        z = torch.randn(10, self.config.latent_dim, device=self.steps.device)
        labels = torch.arange(self.num_classes, device=z.device)
        images = torch.sigmoid(self.decode(z[None].expand(self.num_classes, -1, -1), labels[:, None]))  # (K, 10, D)
        grids["samples_by_class"] = (images.reshape(-1, *self.image_shape), 10)
        return grids
