"""The evaluator: a small CNN classifier trained once on real training digits, then frozen.

Every later metric looks through it: its penultimate features feed the Fréchet distance and KID
("FD-evaluator", since Inception weights cannot be downloaded here and a domain network is the usual MNIST
practice), and its predictions give mode coverage and the label accuracy of translations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, to_unit
from genzoo.params import TrainConfig, param


@dataclass
class Config(TrainConfig):
    width: int = param(32, gt=0)  # channels of the first conv block; the second has twice as many
    features: int = param(128, gt=0)  # size of the penultimate layer (the feature space of FD and KID)
    dropout: float = param(0.3, ge=0, le=1)
    shift: float = param(2.0, ge=0)  # random translation of training images, in pixels (0 = none)
    weight_decay: float = param(5e-4, ge=0)


def conv_block(c_in: int, c_out: int, batchnorm: bool = True) -> nn.Sequential:
    """conv + BN + ReLU twice, then 2x2 max-pooling. Without batchnorm (VGG's plain conv + ReLU) the BN slots
    hold Identity, so the layers keep their places and `feature_maps` reads either kind alike."""
    def norm(c: int) -> nn.Module:
        return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm), norm(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batchnorm), norm(c_out), nn.ReLU(),
        nn.MaxPool2d(2),
    )


def random_shift(x: torch.Tensor, pixels: float) -> torch.Tensor:
    """Translate each image by its own random offset of up to `pixels` (batched, on the device)."""
    b, _, h, w = x.shape
    offset = (torch.rand(b, 2, device=x.device) * 2 - 1) * pixels
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = offset[:, 0] * 2 / w
    theta[:, 1, 2] = offset[:, 1] * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


class Model(ZooModel):
    Config = Config
    batchnorm: ClassVar[bool] = True  # False: VGG's plain layers (genzoo.models.perceptual)

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        c, h, w = image_shape
        width, bn = config.width, self.batchnorm
        self.body = nn.Sequential(conv_block(c, width, bn), conv_block(width, 2 * width, bn), nn.Flatten())
        flat = 2 * width * (h // 4) * (w // 4)
        self.head = nn.Sequential(nn.Linear(flat, config.features, bias=not bn),
                                  nn.BatchNorm1d(config.features) if bn else nn.Identity(), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.classify = nn.Linear(config.features, num_classes)

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, features): the space FD, KID and precision/recall live in."""
        return self.head(self.body(x01 * 2 - 1))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.classify(self.dropout(self.features(x01)))  # (B, num_classes) logits

    def feature_maps(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps a perceptual loss compares (EnhanceNet's L_P and L_T): "texture1", "texture2", the first
        conv + (BN +) ReLU of each block, (B, w, 28, 28) and (B, 2w, 14, 14); "perceptual1", "perceptual2", each
        block's pooled output, (B, w, 14, 14) and (B, 2w, 7, 7). x01 (B, C, 28, 28) in [0, 1]."""
        h, maps = x01 * 2 - 1, {}
        for i, block in enumerate(self.body[:2], start=1):
            maps[f"texture{i}"] = block[:3](h)
            h = maps[f"perceptual{i}"] = block[3:](maps[f"texture{i}"])
        return maps

    @torch.no_grad()
    def predict(self, x01: torch.Tensor) -> torch.Tensor:
        return self(x01).argmax(dim=1)

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(to_unit(batch["x"]))  # (B, num_classes) logits

    @torch.no_grad()
    def classes_of(self, features: torch.Tensor) -> torch.Tensor:
        """The class `predict` gives, from `features`' output: in eval mode predict(x) == classes_of(features(x))."""
        return self.classify(self.dropout(features)).argmax(dim=1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr, weight_decay=self.config.weight_decay)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        x = to_unit(batch["x"])
        if self.config.shift > 0:
            x = random_shift(x, self.config.shift)
        logits = self(x)
        loss = F.cross_entropy(logits, batch["y"])
        opt["model"].zero_grad(set_to_none=True)
        loss.backward()
        opt["model"].step()
        accuracy = (logits.argmax(1) == batch["y"]).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self(to_unit(batch["x"]))
        return {"loss": F.cross_entropy(logits, batch["y"]),
                "accuracy": (logits.argmax(1) == batch["y"]).float().mean()}
