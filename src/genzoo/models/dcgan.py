"""Deep convolutional GAN — Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks" (ICLR 2016), sized for 28×28.

The paper's architecture rules: no pooling (strided convolutions in D, fractionally-strided ones in G), no
fully connected hidden layers (only G's project-and-reshape of z and D's final logit), BatchNorm in both nets
except G's output and D's input layer, ReLU in G with tanh at its output, LeakyReLU(0.2) in D; 5×5 kernels,
weights ~ N(0, 0.02), Adam lr 2e-4 with β1 = 0.5, batch 128, z ~ U(-1, 1)^100 (the paper's uniform prior).
    G: z -> linear -> (2w, 7, 7) -> convT -> (w, 14, 14) -> convT -> (C, 28, 28) -> tanh, shown as (t + 1) / 2
    D: (C, 28, 28) in [-1, 1] -> conv -> (w, 14, 14) -> conv -> (2w, 7, 7) -> linear -> one logit
D's BatchNorm always normalizes with the statistics of the batch in hand (no running averages): D only ever
sees whole batches of one kind, all real or all fake, as in training, so its eval mode equals its train mode
and G's step cannot change D through BatchNorm buffers. The update order is the 2014 paper's (k D steps, then
one G step through a frozen D), with the same non-saturating / minimax switch as genzoo.models.gan.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, normal_init
from genzoo.params import TrainConfig, param

K = 5  # kernel size; stride 2 with padding 2 halves (D) or, with output_padding 1, doubles (G) the side


def generator(noise_dim: int, width: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(noise_dim, 2 * width * 7 * 7, bias=False), nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),  # (B, 2w, 7, 7)
        nn.ConvTranspose2d(2 * width, width, K, 2, 2, output_padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(),  # (B, w, 14, 14)
        nn.ConvTranspose2d(width, channels, K, 2, 2, output_padding=1), nn.Tanh(),  # (B, C, 28, 28) in [-1, 1]
    )


def discriminator(width: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, K, 2, 2), nn.LeakyReLU(0.2),  # (B, w, 14, 14): no BatchNorm on D's input layer
        nn.Conv2d(width, 2 * width, K, 2, 2, bias=False), nn.BatchNorm2d(2 * width, track_running_stats=False),
        nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),  # (B, 1) logit
    )


@dataclass
class Config(TrainConfig):
    noise_dim: int = param(100, gt=0)
    noise: str = param("uniform", choices=adv.NOISES)  # the paper's U(-1, 1); most re-implementations use normal
    width: int = param(64, gt=0)  # channels at 14×14; 7×7 layers have twice as many
    d_steps: int = param(1, gt=0)  # k: D updates per G update, each on its own real minibatch
    g_loss: str = param("non_saturating", choices=adv.G_LOSSES)
    beta1: float = param(0.5, ge=0, le=1)  # Adam's β1: 0.5 (the paper's; 0.9 oscillated and was unstable)


class Model(adv.GeneratorDiscriminatorPair, ZooModel):
    Config = Config
    samples = True

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"dcgan is sized for 28×28 images, got {image_shape}")
        self.batches_per_step = config.d_steps  # the engine hands train_step k minibatches at once
        self.noise_bounds = adv.noise_bounds(config.noise)
        self.gen = generator(config.noise_dim, config.width, image_shape[0])
        self.disc = discriminator(config.width, image_shape[0])
        normal_init(self)  # the paper: every weight ~ N(0, 0.02)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (self.gen(z) + 1) / 2  # (B, C, H, W) in [0, 1]

    def criticize(self, x01: torch.Tensor) -> torch.Tensor:
        return self.disc(x01 * 2 - 1)  # (B, 1) logits; D works in the paper's [-1, 1]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return {"disc": adam(self.disc.parameters(), self.config.lr, betas),
                "gen": adam(self.gen.parameters(), self.config.lr, betas)}
