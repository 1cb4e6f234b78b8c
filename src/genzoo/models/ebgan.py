"""Energy-based GAN — Zhao, Mathieu & LeCun 2017, "Energy-based Generative Adversarial Network" (ICLR 2017),
sized for 28×28.

D is an autoencoder and its energy is the reconstruction error, D(x) = ‖Dec(Enc(x)) − x‖² / (C·H·W) (the
per-pixel mean, so the margin does not depend on the image size). With a margin m:
    loss_d = D(x) + max(0, m − D(G(z)))       D lowers the energy of data, raises that of fakes up to m
    loss_g = D(G(z)) + λ_pt · f_PT(S)         G lowers the energy of its samples
f_PT, the "pulling-away term" (§2.4), is the mean over i ≠ j of cos²(s_i, s_j) over the encoder codes S of the
fake batch: it pushes G's samples apart in D's code space, against mode collapse; λ_pt = 0.1 as in the paper.
Fakes whose energy already reaches m give D no gradient, so D need not push fake energies to infinity; the
paper's Theorem 2 puts the Nash equilibrium at p_G = p_data.

Architecture: the generator is DCGAN's (genzoo.models.dcgan.generator: project, two stride-2 transposed convs,
tanh), as in the paper's LSUN/CelebA setups, which follow DCGAN; the discriminator is a conv autoencoder of the
same shape, encoder (C, 28, 28) -> (w, 14, 14) -> (2w, 7, 7) -> linear code (code_dim), decoder back with a
linear layer and transposed convs, tanh. The narrow code keeps the AE from reconstructing everything (which would
flatten the energy surface) and is the representation f_PT compares. Adam β1 = 0.5 (DCGAN's, which the paper
reuses for its convolutional models), lr 1e-3 (in the paper's MNIST search range; DCGAN's 2e-4 learnt too slowly
in short runs: docs/notes/model-history.md).
As in genzoo.models.dcgan, D's encoder BatchNorm (switchable) always uses the statistics of the batch in hand
(D sees one kind per batch), so G's step through a frozen D changes nothing in D; the decoder has none (see
`decoder`).

The margin is on the scale of the per-pixel MSE in the [-1, 1] pixel range (at most 4), not on the scale of the
paper's norm ‖·‖ over the 784 pixels: m = 0.1 per pixel is a norm of √(0.1·784) ≈ 9, the order of the paper's
MNIST margins (~10). It must sit between the energy of reconstructed digits (≈ 0.05 here) and that of junk: a
margin that fake energies never reach never saturates D's margin term, which then pushes fakes up faster than G
pulls them down (m = 1 left G at grey noise: docs/notes/model-history.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, normal_init, to_unit
from genzoo.models.dcgan import K, generator
from genzoo.params import TrainConfig, param


def norm(kind: type[nn.Module], features: int, on: bool) -> nn.Module:
    return kind(features, track_running_stats=False) if on else nn.Identity()


def encoder(width: int, channels: int, code_dim: int, bn: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, K, 2, 2), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
        nn.Conv2d(width, 2 * width, K, 2, 2, bias=not bn), norm(nn.BatchNorm2d, 2 * width, bn),
        nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, code_dim),  # (B, code_dim): the code f_PT looks at
    )


def decoder(width: int, channels: int, code_dim: int) -> nn.Sequential:
    """No BatchNorm here: with batch statistics the decoder would rebuild each image from its deviation from its
    batch mates, so the reconstruction (hence the energy G descends) of an all-fake batch is set by the batch."""
    return nn.Sequential(
        nn.Linear(code_dim, 2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),  # (B, 2w, 7, 7)
        nn.ConvTranspose2d(2 * width, width, K, 2, 2, output_padding=1), nn.ReLU(),  # (B, w, 14, 14)
        nn.ConvTranspose2d(width, channels, K, 2, 2, output_padding=1), nn.Tanh(),  # (B, C, 28, 28) in [-1, 1]
    )


class AutoencoderCritic(nn.Module):
    def __init__(self, width: int, channels: int, code_dim: int, bn: bool = True):
        super().__init__()
        self.enc, self.dec = encoder(width, channels, code_dim, bn), decoder(width, channels, code_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [-1, 1] -> (energy (B,), code (B, code_dim))."""
        code = self.enc(x)
        energy = (self.dec(code) - x).pow(2).flatten(1).mean(1)
        return energy, code


def pull_away(codes: torch.Tensor) -> torch.Tensor:
    """f_PT(S) = 1 / (N(N-1)) Σ_{i≠j} cos²(s_i, s_j): 0 for orthogonal codes, 1 for parallel ones. (N ≥ 2)"""
    n = codes.shape[0]
    unit = codes / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, F)
    cos2 = (unit @ unit.T).pow(2)  # (N, N)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


def d_loss(energy_real: torch.Tensor, energy_fake: torch.Tensor, margin: float) -> torch.Tensor:
    """D(x) + [m − D(G(z))]⁺, batch means: a fake whose energy already reaches m contributes no gradient."""
    return energy_real.mean() + torch.relu(margin - energy_fake).mean()


@dataclass
class Config(TrainConfig):
    noise_dim: int = param(100, gt=0)
    noise: str = param("uniform", choices=adv.NOISES)
    width: int = param(64, gt=0)  # channels at 14×14 in G and in D's encoder/decoder; 7×7 layers have twice as many
    code_dim: int = param(32, gt=0)  # D's bottleneck: a narrow code keeps the AE from reconstructing anything
    disc_batchnorm: bool = True  # BatchNorm (batch statistics) in D's encoder; the decoder never has any
    margin: float = param(0.1, gt=0)  # m, on the per-pixel MSE scale (see the module docstring)
    pull_away: bool = True  # EBGAN-PT: add λ_pt · f_PT to G's loss
    pt_weight: float = param(0.1, ge=0)  # λ_pt (the paper's 0.1)
    d_steps: int = param(1, gt=0)  # D updates per G update, each on its own real minibatch
    beta1: float = param(0.5, ge=0, le=1)


class Model(adv.GeneratorDiscriminatorPair, ZooModel):
    Config = Config
    samples = True

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"ebgan is sized for 28×28 images, got {image_shape}")
        self.batches_per_step = config.d_steps
        self.noise_bounds = adv.noise_bounds(config.noise)
        self.gen = generator(config.noise_dim, config.width, image_shape[0])
        self.disc = AutoencoderCritic(config.width, image_shape[0], config.code_dim, config.disc_batchnorm)
        normal_init(self)  # DCGAN's init, which the paper's conv models follow

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (self.gen(z) + 1) / 2  # (B, C, H, W) in [0, 1]

    def energy(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(energy (B,), code (B, F)) of images in [0, 1]; D works in [-1, 1]."""
        return self.disc(x01 * 2 - 1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {"disc": adam(self.disc.parameters(), self.config.lr, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        """k D updates (real minibatch + fresh detached fakes), then one G update through a frozen D."""
        cfg = self.config
        reals = to_unit(batch["x"]).chunk(cfg.d_steps)
        for real_x in reals:
            fake_x = self.generate(self.noise(len(real_x))).detach()
            energy_real, energy_fake = self.energy(real_x)[0], self.energy(fake_x)[0]
            loss_d = d_loss(energy_real, energy_fake, cfg.margin)
            opt["disc"].zero_grad(set_to_none=True)
            loss_d.backward()
            opt["disc"].step()
        with adv.frozen(self.disc):
            energy_gen, codes = self.energy(self.generate(self.noise(len(reals[0]))))
            loss_g_adv = energy_gen.mean()
            pt = pull_away(codes)
            loss_g = loss_g_adv + cfg.pt_weight * pt if cfg.pull_away else loss_g_adv
            opt["gen"].zero_grad(set_to_none=True)
            loss_g.backward()
            grad_norm_g = adv.grad_norm(self.gen.parameters())
            opt["gen"].step()
        return {"loss_d": loss_d.detach(), "loss_g_adv": loss_g_adv.detach(), "pull_away": pt.detach(),
                "grad_norm_g": grad_norm_g, "energy_real": energy_real.mean().detach(),
                "energy_fake": energy_fake.mean().detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """D's energies of held-out digits and of fresh samples, and D's loss on them."""
        energy_real = self.energy(to_unit(batch["x"]))[0]
        energy_fake, codes = self.energy(self.generate(self.noise(len(batch["x"]))))
        return {"energy_real": energy_real.mean(), "energy_fake": energy_fake.mean(),
                "loss_d": d_loss(energy_real, energy_fake, self.config.margin), "pull_away": pull_away(codes)}
