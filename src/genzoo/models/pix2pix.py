"""Pix2Pix — Isola, Zhu, Zhou & Efros 2017, "Image-to-Image Translation with Conditional Adversarial
Networks" (CVPR 2017), sized for 28×28: edge map of a digit ("a") -> the digit ("b"), on the "paired" set.

Generator: a U-Net. The encoder halves the side 28 -> 14 -> 7 -> 4, the decoder doubles it back, and every
decoder level is concatenated with the encoder level of the same size, so low-level structure (here: where the
strokes are) crosses directly instead of squeezing through the 4×4 bottleneck. Paper choices kept: 4×4 stride-2
convolutions, BatchNorm everywhere except the first encoder layer, LeakyReLU(0.2) down, ReLU up, tanh out, and
dropout 0.5 in the first decoder layers as G's only noise (the paper found z input ignored). translate() runs in
eval mode (no dropout, BatchNorm running statistics) so the scores are deterministic.
Discriminator: a PatchGAN on the channel-concatenated pair (a, b) in [-1, 1], i.e. it judges whether b is a
plausible translation of a. Two 4×4 stride-2 convolutions and a 1×1 logit layer give a 7×7 map of logits, each
seeing a 10×10 patch (the paper's 70×70 patches are ~27 % of a 256 px side; 10 px is ~36 % of 28, the
smallest that still covers a stroke crossing). Its BatchNorm uses batch statistics only (no running buffers),
so G's step through the frozen D cannot change D.
Loss: D minimizes the BCE on real pairs and fake pairs, halved (the paper divides D's objective by 2); G
minimizes the non-saturating cGAN loss BCE(D(a, G(a)), 1) + λ·L1(G(a), b), λ = 100, L1 measured in the
[-1, 1] space G outputs (as in the paper's code, so λ keeps its meaning). `adversarial: false` is the L1-only
ablation of the paper's Table 1: no discriminator is built at all. Adam lr 2e-4, β1 0.5; D updates first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genzoo.engine.pictures import interleave_rows, paired_groups
from genzoo.metrics.translation import translate_all, translation_scores
from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, normal_init, to_unit
from genzoo.params import TrainConfig, param


def down(c_in: int, c_out: int, kernel: int = 4, norm: bool = True) -> nn.Sequential:
    """Halve the side (28 -> 14 -> 7 with k=4, p=1; 7 -> 4 with k=3, p=1)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


def up(c_in: int, c_out: int, kernel: int = 4, dropout: float = 0.0) -> nn.Sequential:
    """Double the side (4 -> 7 with k=3, p=1; 7 -> 14 -> 28 with k=4, p=1)."""
    layers: list[nn.Module] = [nn.ConvTranspose2d(c_in, c_out, kernel, 2, 1, bias=False), nn.BatchNorm2d(c_out)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.ReLU())


class UNet(nn.Module):
    def __init__(self, c_in: int, c_out: int, width: int, dropout: float):
        super().__init__()
        w = width
        self.down1 = down(c_in, w, norm=False)  # (B, w, 14, 14)
        self.down2 = down(w, 2 * w)  # (B, 2w, 7, 7)
        self.bottleneck = down(2 * w, 4 * w, kernel=3)  # (B, 4w, 4, 4)
        self.up3 = up(4 * w, 2 * w, kernel=3, dropout=dropout)  # (B, 2w, 7, 7)
        self.up2 = up(4 * w, w, dropout=dropout)  # (B, w, 14, 14) from [up3, down2]
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * w, c_out, 4, 2, 1), nn.Tanh())  # (B, C, 28, 28)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        e1 = self.down1(a)
        e2 = self.down2(e1)
        d3 = self.up3(self.bottleneck(e2))
        d2 = self.up2(torch.cat([d3, e2], 1))  # the skips: encoder features of the same size
        return self.out(torch.cat([d2, e1], 1))  # (B, C, 28, 28) in [-1, 1]


def patch_discriminator(channels: int, width: int) -> nn.Sequential:
    """(B, channels, 28, 28) -> (B, 1, 7, 7) logits, each over a 10×10 input patch (receptive field 4, then
    4 + 3·2 = 10; the 1×1 head adds nothing)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14): no BatchNorm on the input layer
        nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width, track_running_stats=False),
        nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
        nn.Conv2d(2 * width, 1, 1),  # (B, 1, 7, 7) patch logits
    )


@dataclass
class Config(TrainConfig):
    lr: float = param(2e-4, gt=0)
    beta1: float = param(0.5, ge=0, le=1)
    lambda_l1: float = param(100.0, ge=0)  # λ: weight of L1(G(a), b) against the cGAN loss
    adversarial: bool = True  # false: the L1-only ablation (no discriminator)
    gen_width: int = param(64, gt=0)  # G channels at 14×14 (7×7: 2×, 4×4: 4×)
    disc_width: int = param(64, gt=0)  # D channels at 14×14 (7×7: 2×)
    dropout: float = param(0.5, ge=0, le=1)  # in G's first two decoder layers (the paper's noise)


class Model(ZooModel):
    Config = Config
    dataset = "paired"

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28):
            raise ValueError(f"pix2pix is sized for 28×28 images, got {image_shape}")
        c = image_shape[0]
        self.gen = UNet(c, c, config.gen_width, config.dropout)
        self.disc = patch_discriminator(2 * c, config.disc_width) if config.adversarial else None
        normal_init(self)  # the paper: weights ~ N(0, 0.02)

    def generate(self, real_a: torch.Tensor) -> torch.Tensor:
        return self.gen(real_a * 2 - 1)  # (B, C, 28, 28) in [-1, 1]

    def criticize(self, real_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """real_a in [0, 1], b in [-1, 1] -> (B, 1, 7, 7) patch logits of 'b is a's true translation'."""
        return self.disc(torch.cat([real_a * 2 - 1, b], 1))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        opts = {"gen": adam(self.gen.parameters(), self.config.lr, betas)}
        if self.disc is not None:
            opts["disc"] = adam(self.disc.parameters(), self.config.lr, betas)
        return opts

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        real_a, real_b = to_unit(batch["a"]), to_unit(batch["b"]) * 2 - 1  # a in [0, 1], b in [-1, 1]
        fake_b = self.generate(real_a)
        out = {}
        loss_g_adv = torch.zeros((), device=real_a.device)
        if self.disc is not None:
            real_logits = self.criticize(real_a, real_b)
            fake_logits = self.criticize(real_a, fake_b.detach())
            loss_d = adv.d_loss(real_logits, fake_logits)
            opt["disc"].zero_grad(set_to_none=True)
            loss_d.backward()
            opt["disc"].step()
            with adv.frozen(self.disc):
                loss_g_adv = adv.g_loss(self.criticize(real_a, fake_b), "non_saturating")
            out = {"loss_d": loss_d.detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
                   "d_fake": torch.sigmoid(fake_logits).mean().detach()}
        loss_l1 = (fake_b - real_b).abs().mean()
        loss_g = loss_g_adv + self.config.lambda_l1 * loss_l1
        opt["gen"].zero_grad(set_to_none=True)
        loss_g.backward()
        opt["gen"].step()
        return {**out, "loss_g_adv": loss_g_adv.detach(), "loss_l1": loss_l1.detach(), "loss_g": loss_g.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake_b = self.translate(batch)
        return {"l1": (fake_b - to_unit(batch["b"])).abs().mean()}  # in [0, 1] units, like the scores

    @torch.no_grad()
    def translate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.generate(to_unit(batch["a"])) + 1) / 2  # (B, C, 28, 28) in [0, 1]

    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.translate(batch)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Up to three groups of three rows of 10: edge maps, G(edges), true digits."""
        groups, per_row = paired_groups(len(data["a"]))
        a, b = data["a"][:groups * per_row], data["b"][:groups * per_row]
        with adv.evaluating(self):
            fake = self.translate({"a": a})
        rows = [to_unit(a), fake, to_unit(b)]
        return {"translations": (interleave_rows(rows, per_row), per_row)}

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator: nn.Module) -> dict[str, float]:
        """G(edges) on the whole test split against the true digits (accuracy, l1, psnr, ssim, fd)."""
        test = data["test"]
        outputs = translate_all(self, {"a": test["a"]})
        return translation_scores(outputs, to_unit(test["b"]), evaluator, test["y"])
