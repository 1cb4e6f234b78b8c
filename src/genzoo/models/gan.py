"""Generative adversarial nets — Goodfellow et al. 2014, "Generative Adversarial Nets" (NeurIPS 2014).

G maps noise z ~ U(-1, 1)^100 through a ReLU MLP to sigmoid pixels; D is a maxout MLP with dropout that says
whether an image is real. They play min_G max_D E[log D(x)] + E[log(1 - D(G(z)))] (Algorithm 1): k updates of
D on fresh real and fake minibatches, then one update of G with D held fixed. G's loss is the paper's
non-saturating -log D(G(z)) by default, or the minimax log(1 - D(G(z))) whose gradient vanishes while D wins.
The MNIST sizes are those of the authors' code (github.com/goodfeli/adversarial, mnist.yaml): G 1200-1200,
D two maxout layers of 240 units x 5 pieces, dropout 0.2 on D's input and 0.5 on its hidden layers, uniform
initial weights (±0.05 in G, ±0.005 in D), SGD lr 0.1 with momentum 0.5 -> 0.7, batch 100, k = 1.

The paper recipe (pipeline/conf/recipes.yaml, `paper: gan:`) trains as that code does: `update: simultaneous`
(D and G from one minibatch and one G(z), both gradients at the same weights, then both steps), z ~ U(-√3, √3)
(`noise: uniform_sqrt3`), SGD whose lr is divided by 1.000004 every update (`lr_schedule: goodfellow`, floor 1e-6)
and whose momentum rises from `momentum` to `momentum_final` over epochs 1..`momentum_saturate_epoch`
(genzoo.engine.training.MomentumRamp). That recipe trains eagerly on a GPU, not as a captured CUDA graph: a graph
keeps SGD's momentum as the number it was captured with, so the ramp would never reach it (fit() says so in one
line). Every other setting of this model may be captured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import Maxout, adam, mlp
from genzoo.params import TrainConfig, param


def maxout_discriminator(pixels: int, units: list[int], pieces: int, p_input: float, p_hidden: float) -> nn.Sequential:
    """Dropout on each layer's input (p_input on the pixels, p_hidden after), maxout layers, one logit."""
    widths = [pixels, *units]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Dropout(p_input if i == 0 else p_hidden), Maxout(n_in, n_out, pieces)]
    return nn.Sequential(*layers, nn.Dropout(p_hidden if units else p_input), nn.Linear(widths[-1], 1))


@dataclass
class Config(TrainConfig):
    noise_dim: int = param(100, gt=0)
    noise: str = param("uniform", choices=adv.NOISES)  # z ~ U(-1, 1) | normal | uniform_sqrt3: U(-√3, √3)
    gen_hidden: list[int] = param([1200, 1200], gt=0)  # ReLU layers of G
    disc_units: list[int] = param([240, 240], gt=0)  # maxout units per layer of D
    pieces: int = param(5, gt=0)  # linear pieces per maxout unit
    dropout_input: float = param(0.2, ge=0, le=1)  # on D's input pixels (the code's include prob 0.8)
    dropout_hidden: float = param(0.5, ge=0, le=1)  # on D's hidden layers
    d_steps: int = param(1, gt=0)  # k: D updates per G update, each on its own real minibatch
    update: str = param("alternating", choices=adv.UPDATES)  # simultaneous: the authors' code's (k = 1)
    g_loss: str = param("non_saturating", choices=adv.G_LOSSES)
    optimizer: str = param("adam", choices=("adam", "sgd"))  # sgd = the paper's; adam reaches digits in fewer steps
    beta1: float = param(0.5, ge=0, le=1)  # Adam's β1 (0.5 as in Radford et al. 2016)
    momentum: float = param(0.5, ge=0, le=1)  # SGD momentum (the paper's start value)
    momentum_final: float = param(0.7, ge=0, le=1)  # SGD momentum reached at momentum_saturate_epoch
    momentum_saturate_epoch: int = param(0, ge=0)  # epoch (1-based) the linear ramp ends; 0 = no ramp
    paper_init: bool = True  # uniform ±0.05 (G) and ±0.005 (D) initial weights as in the authors' code


class Model(adv.GeneratorDiscriminatorPair, ZooModel):
    Config = Config
    samples = True

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if config.update == "simultaneous" and config.d_steps != 1:
            raise ValueError(f"gan: update simultaneous takes one minibatch per step (d_steps 1), got {config.d_steps}")
        if config.momentum_saturate_epoch and config.optimizer != "sgd":
            raise ValueError(f"gan: momentum_saturate_epoch ramps SGD's momentum; optimizer is {config.optimizer}")
        self.batches_per_step = config.d_steps  # the engine hands train_step k minibatches at once
        self.noise_bounds = adv.noise_bounds(config.noise)
        pixels = math.prod(image_shape)
        self.gen = mlp([config.noise_dim, *config.gen_hidden, pixels])  # -> pixel logits
        self.disc = maxout_discriminator(pixels, config.disc_units, config.pieces, config.dropout_input,
                                         config.dropout_hidden)  # -> one logit
        if config.paper_init:
            for net, bound in ((self.gen, 0.05), (self.disc, 0.005)):
                for p in net.parameters():
                    if p.ndim > 1:
                        nn.init.uniform_(p, -bound, bound)
                    else:
                        nn.init.zeros_(p)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gen(z)).view(-1, *self.image_shape)  # (B, C, H, W) in [0, 1]

    def criticize(self, x01: torch.Tensor) -> torch.Tensor:
        return self.disc(x01)  # (B, 1) logits

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        if self.config.update == "simultaneous":
            return adv.simultaneous_step(self, batch, opt)
        return super().train_step(batch, opt)  # Algorithm 1 (adversarial.alternating_step)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        if c.optimizer == "sgd":
            return {"disc": torch.optim.SGD(self.disc.parameters(), lr=c.lr, momentum=c.momentum),
                    "gen": torch.optim.SGD(self.gen.parameters(), lr=c.lr, momentum=c.momentum)}
        return {"disc": adam(self.disc.parameters(), c.lr, betas=(c.beta1, 0.999)),
                "gen": adam(self.gen.parameters(), c.lr, betas=(c.beta1, 0.999))}
