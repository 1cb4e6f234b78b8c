"""EnhanceNet — Sajjadi, Schölkopf & Hirsch 2017, "EnhanceNet: Single Image Super-Resolution Through
Automated Texture Synthesis" (ICCV 2017), ×4 on the "superres" set: a 7×7 area-downsampled digit -> 28×28.

Generator (the paper's, narrowed): conv 3×3 -> residual blocks at the low resolution -> twice (nearest-neighbour
×2 upsampling + conv 3×3; nearest + conv instead of transposed convolutions avoids checkerboard artifacts) ->
conv to one channel. That output is a *residual* added to the bicubic upsampling of the input: the network only
has to learn what bicubic misses, which speeds up training and keeps low frequencies right from step one.
Two training objectives (`loss`):
- "pixel": MSE to the truth (the paper's ENet-E): best PSNR, blurry, since the mean of all plausible
  high-resolution digits is a blur.
- "perceptual": the paper's ENet-PAT, L_P + L_T + L_A, no pixel loss. The perceptual network is a frozen VGG-style
  digit classifier (genzoo.models.perceptual: VGG-19 ImageNet weights cannot be downloaded here), trained by its
  own stage and kept apart from the evaluator that scores the outputs; its two conv blocks stand in for VGG's:
    L_P  MSE of the maps after block 1 (14×14) and block 2 (7×7), the analogues of pool2 and pool5;
    L_T  MSE of Gram matrices of the first conv + ReLU of block 1 (28×28) and of block 2 (14×14), the
         analogues of conv1.1 and conv2.1, each computed on patches covering 14×14 image pixels (the paper's
         16×16 patches on 128 px crops would be most of a 28 px digit; `texture_patch` = 28 uses the whole map);
    L_A  non-saturating GAN loss against a small conv discriminator on the 28×28 outputs.
  As in the paper every feature map is divided by its mean activation before L_P and L_T, Gram matrices are
  sums over a patch's positions (not normalized), and the weights default to its appendix table (L_A 2,
  L_P 0.2 and 0.02, L_T 3e-7 and 1e-6), Adam 1e-4. D updates first, then G through a frozen D.
The perceptual network is attached by train_stage (attach_perceptual), kept out of the state_dict and never
trained; it follows the model across devices. Pixel mode does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.engine.pictures import interleave_rows, paired_groups
from genzoo.metrics.translation import translate_all, translation_scores
from genzoo.models import adversarial as adv
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, to_unit
from genzoo.params import TrainConfig, param

FACTOR = 4
LOSSES = ("pixel", "perceptual")


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class Generator(nn.Module):
    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),  # (B, w, 7, 7)
            *[ResidualBlock(width) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),  # 14×14
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),  # 28×28
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )
        self.residual = nn.Conv2d(width, channels, 3, padding=1)  # (B, C, 28, 28), no activation

    def forward(self, lowres01: torch.Tensor) -> torch.Tensor:
        return bicubic(lowres01) + self.residual(self.body(lowres01))  # (B, C, 28, 28), about [0, 1]


def bicubic(lowres01: torch.Tensor) -> torch.Tensor:
    """(B, C, 7, 7) -> (B, C, 28, 28), unclamped (the baseline clamps it to [0, 1])."""
    return F.interpolate(lowres01, scale_factor=FACTOR, mode="bicubic", align_corners=False)


def discriminator(channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, 2w, 7, 7)
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),  # (B, 1) logit
    )


def gram(maps: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * patches, C, C): Σ over each patch×patch window's positions of f fᵀ."""
    b, c, h, w = maps.shape
    p = min(patch, h)
    tiles = maps.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p * p)  # (B·n, C, p²)
    return tiles @ tiles.transpose(1, 2)


def mean_normalized(maps: torch.Tensor) -> torch.Tensor:
    """Each image's maps divided by their mean activation (the paper's §5.3; ReLU maps, so the mean is > 0)."""
    return maps / (maps.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)


@dataclass
class Config(TrainConfig):
    lr: float = param(1e-4, gt=0)
    loss: str = param("perceptual", choices=LOSSES)  # pixel = ENet-E (MSE); perceptual = ENet-PAT
    width: int = param(64, gt=0)
    blocks: int = param(10, ge=0)  # residual blocks at the low resolution
    disc_width: int = param(32, gt=0)
    w_perceptual: list[float] = param([0.2, 0.02])  # L_P weights at block 1 (14×14) and block 2 (7×7)
    w_texture: list[float] = param([3e-7, 1e-6])  # L_T weights at block 1 (28×28) and block 2 (14×14) maps
    w_adv: float = param(2.0, ge=0)  # L_A weight
    texture_patch: int = param(14, gt=0)  # side of the Gram patches in image pixels (28 = the whole image)


class Model(ZooModel):
    Config = Config
    dataset = "superres"
    perceptual_network = "perceptual"  # perceptual mode's L_P and L_T
    comparison = ("enhancenet_mse", "enhancenet")  # the paper's figure: ENet-E beside ENet-PAT on the same inputs

    @classmethod
    def perceptual_network_for(cls, section):
        """ENet-E's pixel loss looks through no network: its stage does not depend on the perceptual one."""
        return cls.perceptual_network if section.get("loss", Config.loss) == "perceptual" else None

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        if tuple(image_shape[1:]) != (28, 28) or 28 % config.texture_patch:
            raise ValueError(f"enhancenet is sized for 28×28 images and patches dividing 28, got {image_shape}, "
                             f"texture_patch {config.texture_patch}")
        c = image_shape[0]
        self.gen = Generator(c, config.width, config.blocks)
        self.disc = discriminator(c, config.disc_width) if config.loss == "perceptual" else None
        object.__setattr__(self, "_perceptual", None)

    def attach_perceptual(self, network: nn.Module) -> None:
        """The frozen perceptual network (not a submodule: not saved, not trained, not switched to train mode)."""
        network.eval()
        for p in network.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "_perceptual", network.to(next(self.parameters()).device))

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the attached network along
        super()._apply(fn, *args, **kwargs)
        if self._perceptual is not None:
            self._perceptual._apply(fn, *args, **kwargs)
        return self

    def perceptual_losses(self, fake_b: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"loss_perceptual", "loss_texture"}: weighted L_P and L_T between outputs and truth, in [0, 1]."""
        if self._perceptual is None:
            raise RuntimeError("enhancenet loss 'perceptual' needs its perceptual network: call attach_perceptual "
                               "first")
        fake, real = self._perceptual.feature_maps(fake_b), self._perceptual.feature_maps(real_b)
        loss_p = loss_t = 0
        for i, (w_p, w_t) in enumerate(zip(self.config.w_perceptual, self.config.w_texture)):
            name = f"{i + 1}"
            loss_p = loss_p + w_p * F.mse_loss(mean_normalized(fake["perceptual" + name]),
                                               mean_normalized(real["perceptual" + name]))
            patch = self.config.texture_patch * fake["texture" + name].shape[-1] // 28  # image px -> map px
            loss_t = loss_t + w_t * F.mse_loss(gram(mean_normalized(fake["texture" + name]), patch),
                                               gram(mean_normalized(real["texture" + name]), patch))
        return {"loss_perceptual": loss_p, "loss_texture": loss_t}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"gen": adam(self.gen.parameters(), self.config.lr)}
        if self.disc is not None:
            opts["disc"] = adam(self.disc.parameters(), self.config.lr)
        return opts

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        real_a, real_b = to_unit(batch["a"]), to_unit(batch["b"])  # (B, C, 7, 7), (B, C, 28, 28)
        fake_b = self.gen(real_a)
        out: dict[str, torch.Tensor] = {}
        if self.disc is None:  # ENet-E
            loss_g = F.mse_loss(fake_b, real_b)
        else:  # ENet-PAT: D first, then G through the frozen D
            real_logits, fake_logits = self.disc(real_b * 2 - 1), self.disc(fake_b.detach() * 2 - 1)
            loss_d = adv.d_loss(real_logits, fake_logits)
            opt["disc"].zero_grad(set_to_none=True)
            loss_d.backward()
            opt["disc"].step()
            with adv.frozen(self.disc):
                loss_g_adv = adv.g_loss(self.disc(fake_b * 2 - 1), "non_saturating")
            terms = self.perceptual_losses(fake_b, real_b)
            loss_g = self.config.w_adv * loss_g_adv + terms["loss_perceptual"] + terms["loss_texture"]
            out = {"loss_d": loss_d.detach(), "loss_g_adv": loss_g_adv.detach(),
                   "d_real": torch.sigmoid(real_logits).mean().detach(),
                   "d_fake": torch.sigmoid(fake_logits).mean().detach(),
                   **{k: v.detach() for k, v in terms.items()}}
        opt["gen"].zero_grad(set_to_none=True)
        loss_g.backward()
        opt["gen"].step()
        return {**out, "loss_g": loss_g.detach(), "mse": F.mse_loss(fake_b.detach(), real_b)}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real_b = to_unit(batch["b"])
        return {"mse": F.mse_loss(self.translate(batch), real_b),
                "bicubic_mse": F.mse_loss(bicubic(to_unit(batch["a"])).clamp(0, 1), real_b)}

    @torch.no_grad()
    def translate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.gen(to_unit(batch["a"])).clamp(0, 1)  # (B, C, 28, 28) in [0, 1]

    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.translate(batch)

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Groups of four rows of 10: low-res input (nearest ×4), bicubic, EnhanceNet output, truth."""
        groups, per_row = paired_groups(len(data["a"]))
        a, b = data["a"][:groups * per_row], data["b"][:groups * per_row]
        with adv.evaluating(self):
            fake = self.translate({"a": a})
        low = F.interpolate(to_unit(a), scale_factor=FACTOR, mode="nearest")
        rows = [low, bicubic(to_unit(a)).clamp(0, 1), fake, to_unit(b)]
        return {"superresolution": (interleave_rows(rows, per_row), per_row)}

    @torch.no_grad()
    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator: nn.Module) -> dict[str, float]:
        """Outputs and the bicubic baseline (keys bicubic_*) on the whole test split against the true digits."""
        from genzoo.metrics.frechet import features

        test = data["test"]
        truth = to_unit(test["b"])
        real_features = features(evaluator, truth)
        scores = translation_scores(translate_all(self, {"a": test["a"]}), truth, evaluator, test["y"], real_features)
        baseline = torch.cat([bicubic(to_unit(test["a"][i:i + 500])).clamp(0, 1)
                              for i in range(0, len(test["a"]), 500)])
        base = translation_scores(baseline, truth, evaluator, test["y"], real_features)
        return {**scores, **{f"bicubic_{k}": v for k, v in base.items()}}

    @classmethod
    @torch.no_grad()
    def comparison_pictures(cls, models: dict[str, ZooModel], test: dict[str, torch.Tensor],
                            n: int = 10) -> dict[str, tuple[torch.Tensor, int]]:
        """The paper's figure: rows of low-res input (nearest ×4), bicubic, the MSE-trained model, the perceptual
        one, and the truth, for the same n test digits -> "enhancenet": (5n, C, H, W) in [0, 1], n per row."""
        from genzoo.data.derived import bicubic_upsample

        pixel, perceptual = (models[name] for name in cls.comparison)
        a, b = test["a"][:n], test["b"][:n]
        low = F.interpolate(to_unit(a), size=b.shape[-2:], mode="nearest")
        grid = torch.cat([low, bicubic_upsample(a), pixel.translate({"a": a}), perceptual.translate({"a": a}),
                          to_unit(b)])
        return {"enhancenet": (grid, len(grid) // 5)}
