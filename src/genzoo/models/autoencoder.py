"""Deterministic autoencoder — Hinton & Salakhutdinov 2006, "Reducing the Dimensionality of Data with Neural
Networks" (Science 313), whose MNIST autoencoder is 784-1000-500-250-30 with logistic hidden units, a linear
code layer, logistic output units and a cross-entropy reconstruction error. Two departures: it is trained end to
end with Adam (no RBM pretraining), and its hidden units are ReLUs (the default of the zoo's MLP block).

An MLP encoder maps an image to a code, an MLP decoder maps the code back to Bernoulli logits, and the loss is
the binary cross-entropy of a dynamically binarized image, like the VAE (so the two reconstruction numbers are
in the same units, nats per image): each step draws a fresh binarization and reconstructs that same draw (no
denoising: input and target are one image). The model cannot sample: it is scored by what its codes are worth
(`extra_scores`): the same small classifier trained on only the 100 shared labels (genzoo.metrics.few_labels),
once on the codes and once on raw pixels, both from the grey-level images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genzoo.metrics.few_labels import few_label_accuracy
from genzoo.models.base import ZooModel
from genzoo.models.blocks import adam, binarize, mlp, to_unit
from genzoo.params import TrainConfig, param

BATCH = 1000  # images encoded at once when scoring


@dataclass
class Config(TrainConfig):
    code_dim: int = param(30, gt=0)
    hidden: list[int] = param([1000, 500, 250], gt=0)  # encoder widths; the decoder mirrors them
    weight_decay: float = param(0.0, ge=0)


class Model(ZooModel):
    Config = Config

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        pixels = math.prod(image_shape)
        self.encoder = mlp([pixels, *config.hidden, config.code_dim])  # linear code units
        self.decoder = mlp([config.code_dim, *reversed(config.hidden), pixels])  # -> Bernoulli logits

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1).float())  # (B, code_dim)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)  # (B, pixels) logits

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, C, H, W) in [0, 1] (Bernoulli means) of images in [0, 1]."""
        return torch.sigmoid(self.decode(self.encode(x01))).view(-1, *self.image_shape)

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(to_unit(batch["x"]))  # reconstructions: it does not sample

    def bce(self, xb: torch.Tensor) -> torch.Tensor:
        """Per-image reconstruction error (B,) in nats: -log p(xb | code(xb)) for binary images xb."""
        x = xb.flatten(1).float()
        logits = self.decode(self.encode(x)).float()
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(self.parameters(), self.config.lr, weight_decay=self.config.weight_decay)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        loss = self.bce(binarize(batch["x"])).mean()
        opt["model"].zero_grad(set_to_none=True)
        loss.backward()
        opt["model"].step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x01 = to_unit(batch["x"])
        return {"bce": self.bce(batch["xb"]).mean(), "mse": (self(x01) - x01).pow(2).mean()}

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, code_dim) of uint8 images, batched: the classifier's features. They encode the grey levels,
        the mean of the binary draws the encoder was trained on (deterministic, and the pixels the baseline sees)."""
        return torch.cat([self.encode(to_unit(x[i:i + BATCH])) for i in range(0, len(x), BATCH)])

    @torch.no_grad()
    def extra_scores(self, data: dict, evaluator=None) -> dict[str, float]:
        """Reconstruction error on the test set, and few-label accuracy of codes against pixels.

        recon_bce: mean -log p(xb | code) per image on the fixed binarized test set (nats); recon_mse: mean squared
        error per pixel of the reconstructions of the grey-level test images. codes/pixels_accuracy: test accuracy
        of the same small classifier trained on the labelled training images only. (The evaluator is not needed.)
        """
        train, test, labelled = data["train"], data["test"], data["labelled"]
        bce = torch.cat([self.bce(test["xb"][i:i + BATCH]) for i in range(0, len(test["xb"]), BATCH)])
        sq = torch.cat([(self(x01) - x01).pow(2).flatten(1).mean(1)
                        for x01 in (to_unit(test["x"][i:i + BATCH]) for i in range(0, len(test["x"]), BATCH))])
        labels = train["y"][labelled]
        code_acc = few_label_accuracy(self.codes(train["x"][labelled]), labels, None, self.codes(test["x"]),
                                      test["y"], self.num_classes)
        pixel_acc = few_label_accuracy(to_unit(train["x"][labelled]).flatten(1), labels, None,
                                       to_unit(test["x"]).flatten(1), test["y"], self.num_classes)
        return {"recon_bce": float(bce.double().mean()), "recon_mse": float(sq.double().mean()),
                "codes_accuracy": code_acc, "pixels_accuracy": pixel_acc, "labelled": len(labelled)}

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        real = data["test"][:50]
        pairs = torch.stack([real, self(real)], dim=1).flatten(0, 1)  # real, recon, real, recon, ...
        return {"reconstructions": (pairs, 10)}
