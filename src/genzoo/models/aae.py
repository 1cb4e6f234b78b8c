"""Adversarial autoencoder — Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015, "Adversarial Autoencoders".

A deterministic encoder q(z|x) is the generator of codes: a discriminator D tells codes of real digits from
draws of the prior p(z) = N(0, prior_std² I), and the encoder learns to fool it, so the aggregated posterior
q(z) = E_x q(z|x) is driven onto p(z) and decoding prior draws gives digits. Each training step (paper §2):
    reconstruction phase   encoder + decoder take one step on the reconstruction error of the minibatch
    regularization phase   D takes one step on prior draws (real) vs. codes (fake), then the encoder takes one
                           step to make D call its codes real (non-saturating -log D(q(x)), D frozen)
The likelihood setup of the paper (appendix): encoder, decoder and D are ReLU MLPs of 2 x 1000 units, a
linear code layer, sigmoid pixel outputs, the Euclidean (sum of squared errors) reconstruction cost on
intensities in [0, 1], codes of size 8 with a Gaussian prior of std 5 on MNIST, weights ~ N(0, 0.01),
minibatches of 100; the paper's Parzen-window log-likelihood (its anchor: src/genzoo/targets.yaml) scores
decoded prior samples.
The paper trains with SGD + momentum; Adam is used here, one optimizer per phase, so each phase has its own step
size and the loss scales of the two phases do not compete. Adam's steps have a size of about the learning rate
whatever the strength of D's signal, so lr_reg sets how fast the adversarial phase moves the codes: the cpu
profile uses half of lr, the gpu profile a tenth, since on the paper's 1000-unit nets half of lr moved the codes
faster than the decoder followed (metrics/probes/aae_gpu_recipe/, docs/notes/model-history.md).
`rec_loss: bce` is the common alternative cost. On a CPU turn `paper_init` off: N(0, 0.01) weights push the
1000-unit layers' activations and gradients into float32 denormals there, which makes each step several times
slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, mlp, to_unit
from genzoo.params import TrainConfig, param


@dataclass
class Config(TrainConfig):
    latent_dim: int = param(8, gt=0)
    hidden: list[int] = param([1000, 1000], gt=0)  # encoder widths; the decoder mirrors them
    disc_hidden: list[int] = param([1000, 1000], gt=0)  # D on codes
    prior_std: float = param(5.0, gt=0)  # p(z) = N(0, prior_std² I)
    rec_loss: str = param("mse", choices=("mse", "bce"))  # mse = the paper's Euclidean cost
    lr_reg: float = param(5e-4, gt=0)  # the regularization phase (D and encoder-as-generator); `lr` = reconstruction
    beta1: float = param(0.5, ge=0, le=1)  # Adam's β1 in the adversarial phase (as in Radford et al. 2016)
    paper_init: bool = True  # weights ~ N(0, 0.01), zero biases (the paper's appendix)


class Model(ZooModel):
    Config = Config
    samples = True

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels = math.prod(image_shape)
        self.encoder = mlp([pixels, *config.hidden, config.latent_dim])  # linear code layer
        self.decoder = mlp([config.latent_dim, *reversed(config.hidden), pixels])  # -> pixel logits
        self.disc = mlp([config.latent_dim, *config.disc_hidden, 1])  # -> one logit: "drawn from the prior"
        if config.paper_init:
            for p in self.parameters():
                if p.ndim > 1:
                    nn.init.normal_(p, 0.0, 0.01)
                else:
                    nn.init.zeros_(p)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.encoder(x01.flatten(1))  # (B, L) codes

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, pixels) logits

    def prior(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=next(self.parameters()).device) * self.config.prior_std

    def reconstruction_error(self, x01: torch.Tensor) -> torch.Tensor:
        """Per-image reconstruction cost (B,): summed over pixels, squared error or cross-entropy."""
        x = x01.flatten(1)
        logits = self.decode(self.encode(x)).float()
        if self.config.rec_loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return (torch.sigmoid(logits) - x).pow(2).sum(-1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, 0.999)
        return {"ae": adam([*self.encoder.parameters(), *self.decoder.parameters()], c.lr),
                "disc": adam(self.disc.parameters(), c.lr_reg, betas=betas),
                "gen": adam(self.encoder.parameters(), c.lr_reg, betas=betas)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        x = to_unit(batch["x"]).flatten(1)  # (B, D) intensities in [0, 1]
        # Reconstruction phase: encoder + decoder (D plays no part and is not stepped).
        rec = self.reconstruction_error(x).mean()
        opt["ae"].zero_grad(set_to_none=True)
        rec.backward()
        opt["ae"].step()
        # Regularization phase, 1: D on prior draws (real) vs. codes of the minibatch (fake, detached).
        real_z, fake_z = self.prior(len(x)), self.encode(x).detach()
        real_logits, fake_logits = self.disc(real_z), self.disc(fake_z)
        loss_d = adv.d_loss(real_logits, fake_logits)
        opt["disc"].zero_grad(set_to_none=True)
        loss_d.backward()
        opt["disc"].step()
        # Regularization phase, 2: the encoder as generator, through a frozen D.
        with adv.frozen(self.disc):
            loss_g = adv.g_loss(self.disc(self.encode(x)), "non_saturating")
            opt["gen"].zero_grad(set_to_none=True)
            loss_g.backward()
            opt["gen"].step()
        return {"rec": rec.detach(), "loss_d": loss_d.detach(), "loss_g_adv": loss_g.detach(),
                "d_real": torch.sigmoid(real_logits).mean().detach(),
                "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reconstruction error of held-out digits, and D's accuracy on their codes vs. as many prior draws."""
        x = to_unit(batch["x"])
        real_logits, fake_logits = self.disc(self.prior(len(x))), self.disc(self.encode(x))
        d_acc = 0.5 * ((real_logits > 0).float().mean() + (fake_logits <= 0).float().mean())
        return {"rec": self.reconstruction_error(x).mean(), "d_acc": d_acc,
                "loss_d": adv.d_loss(real_logits, fake_logits)}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.prior(n))).view(n, *self.image_shape)  # pixel intensities

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(x01))).view(-1, *self.image_shape)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Samples, reconstructions and, for a 2-D code, the test codes coloured by label over the prior."""
        grids = {"samples": (self.sample(100), 10)}
        real = data["test"][:50]
        grids["reconstructions"] = (torch.stack([real, self.reconstruct(real)], dim=1).flatten(0, 1), 10)
        if self.config.latent_dim == 2:
            codes = self.encode(data["test"])
            grids["codes"] = (code_scatter(codes, data["test_y"], self.config.prior_std, self.num_classes), 1)
        return grids


def code_scatter(codes: torch.Tensor, labels: torch.Tensor, prior_std: float, num_classes: int) -> torch.Tensor:
    """2-D codes coloured by label, over circles at 1, 2, 3 prior standard deviations, as a (1, 3, H, W) image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from genzoo.engine.pictures import figure_to_image

    codes, labels = codes.float().cpu().numpy(), labels.cpu().numpy()
    fig = Figure(figsize=(4.5, 4), dpi=100)  # not pyplot: no global figure state, no backend switch
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in (1, 2, 3):
        ax.add_patch(Circle((0, 0), r * prior_std, fill=False, color="0.8", lw=0.8))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10" if num_classes <= 10 else "tab20",
                        vmin=-0.5, vmax=num_classes - 0.5, s=12 if len(codes) <= 200 else 3)
    fig.colorbar(points, ax=ax, ticks=range(num_classes), label="label")
    limit = max(3.2 * prior_std, float(abs(codes).max()) * 1.05)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xlabel="z1", ylabel="z2")
    ax.set_title(f"{len(codes)} test codes (circles: 1-3 prior std)", fontsize=9)
    fig.tight_layout()
    return figure_to_image(fig)
