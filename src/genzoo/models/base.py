"""The contract every model of the zoo keeps (DESIGN.md §6): `ZooModel`, the base class of each file's `Model`.

A model *declares* what it is in class attributes, and the stages read those declarations instead of sniffing
for methods or naming models: `samples` (the evaluate stage scores its samples), `likelihood` (scores its test
NLL), `dataset` (which data it learns from), `perceptual_network` / `few_labels` (what the train and triplegan
stages hand it before training), `comparison` (a figure beside other registry models). tests/test_models.py
checks that every registered model's declarations match the methods it overrides, so a declaration cannot lie.

ZooModel is a plain nn.Module with no parameters, buffers or RNG use of its own: a model's state_dict and
numerics are exactly what its own __init__ and methods make.

Batches are dicts of device tensors: on the base images "x" uint8 (B, C, H, W), "y" int64 labels and "xb",
the split's fixed binarization (the test set's is what likelihoods are scored on, the training split's is the
papers' static binarized MNIST); on a derived set, that set's keys (genzoo.data.derived).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn

Grids = dict[str, tuple[torch.Tensor, int]]  # picture name -> (images (N, C, H, W) in [0, 1], images per row)


class ZooModel(nn.Module):
    """`Model(config, image_shape, num_classes)`; `Config` is its dataclass (its params.yaml section)."""

    # ---- declarations (class attributes; a model overrides the ones that are true of it) --------------------
    samples: ClassVar[bool] = False
    """Draws images from its prior with `sample(n)`: the evaluate stage scores n samples (FD, KID, precision/
    recall, modes, Parzen) and the train stage watches their class histogram."""
    likelihood: ClassVar[Literal["exact", "bound"] | None] = None
    """`log_likelihood(xb, k)` gives log p(x) itself ("exact": autoregressive models, scored on every test image)
    or a lower bound ("bound": the IWAE bound of a VAE, on `evaluate.iwae_images` of them, with `elbo(xb)` too)."""
    conditional: ClassVar[bool] = False
    """Generates given a class label: `sample_given(y)` (its `sample(n)` then draws a balanced mix of labels)."""
    dataset: ClassVar[str | None] = None
    """The derived set it learns from and translates (genzoo.data.derived: paired, superres, unpaired, ...,
    strokes, captions); None = the base images. Decides its DVC stage (train_translation@ vs train@) and data."""
    few_labels: ClassVar[bool] = False
    """A semi-supervised classifier: it is handed the shared few labelled images by `attach_labelled(x, y)`."""
    perceptual_network: ClassVar[str | None] = None
    """The registry name of a frozen network its losses look through (EnhanceNet's: "perceptual"), trained by its
    own stage and handed over by `attach_perceptual(network)` before training; never the evaluator that scores it.
    Read through `perceptual_network_for`, which may name none for a params section whose losses need none."""
    comparison: ClassVar[tuple[str, ...]] = ()
    """Registry names whose trained models one figure shows side by side (metrics/figures/comparisons/), drawn
    by `comparison_pictures` once the evaluate stage has scored every one of them; () = none."""
    batches_per_step: int = 1
    """Minibatches one train_step consumes: the engine hands it one batch of batches_per_step * batch_size rows
    (a GAN's k discriminator updates, each on its own real minibatch). A model may set it from its config."""

    @classmethod
    def perceptual_network_for(cls, section: Mapping[str, Any]) -> str | None:
        """The frozen network a model of this class trains through with this params section (the section as
        written, or `vars(config)`): `perceptual_network`, or None when the section's chosen losses look through
        none (EnhanceNet's pixel loss), so that model's stage neither waits for nor reruns on that network."""
        return cls.perceptual_network

    @property
    def binary_samples(self) -> bool:
        """Its samples are black-and-white draws (a binary autoregressive model's), where the others give grey
        levels (a VAE's Bernoulli means, a GAN's output): the evaluate stage compares them with the fixed
        binarization of the real images, so that binarizing is not scored as the model's error. A property, as
        it may follow the config."""
        return False

    # ---- what every model implements ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Its optimizers by name (the engine checkpoints and schedules them; train_step steps them)."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One update; returns detached scalar losses. The model owns its update order (GANs: D first, then G
        through a frozen D), so one `fit()` trains any of them."""
        raise NotImplementedError

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch means of its held-out metrics (val during training, test at the end)."""
        raise NotImplementedError

    @torch.no_grad()
    def output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the model makes, one tensor, for tests and pictures: len(batch["x"]) samples for a sampler;
        otherwise what the model makes of `batch` (translations, reconstructions, a classifier's logits)."""
        if self.samples:
            return self.sample(len(batch["x"]))
        raise NotImplementedError(f"{type(self).__module__}.Model: a model that does not sample defines output()")

    def pictures(self, data: dict[str, torch.Tensor]) -> Grids:
        """Named image grids for the report. data: on the base images {"test": up to 2000 test images in [0, 1],
        "test_y": their labels, "train": the uint8 training split}; on a derived set its first 100 test rows,
        every key, as stored; and "classes": the data set's class names (a list of str), for any words drawn.
        None by default."""
        return {}

    def extra_scores(self, data: dict[str, dict[str, torch.Tensor]], evaluator: nn.Module) -> dict[str, float]:
        """Its own metrics for the evaluate stage; data = {"train", "val", "test": split dicts on the device}
        (and "labelled": the indices of the shared few-label subset, on the base images). None by default."""
        return {}

    # ---- what a declaration promises --------------------------------------------------------------------------
    def sample(self, n: int) -> torch.Tensor:
        """`samples`: n draws (n, C, H, W) in [0, 1]."""
        raise NotImplementedError(f"{type(self).__module__}.Model does not sample")

    def sample_given(self, y: torch.Tensor) -> torch.Tensor:
        """`conditional`: one draw per label in y (N,): (N, C, H, W) in [0, 1]."""
        raise NotImplementedError(f"{type(self).__module__}.Model is not conditional")

    def log_likelihood(self, xb: torch.Tensor, k: int) -> torch.Tensor:
        """`likelihood`: log p(x) or its bound (k importance samples), per image (B,), in nats."""
        raise NotImplementedError(f"{type(self).__module__}.Model has no likelihood")

    def elbo(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        """`likelihood == "bound"`: per-image ELBO terms, at least {"elbo": (B,)} (the k = 1 bound)."""
        raise NotImplementedError(f"{type(self).__module__}.Model has no ELBO")

    def attach_labelled(self, x_uint8: torch.Tensor, y: torch.Tensor) -> None:
        """`few_labels`: the labelled images (N, C, H, W) uint8 and their labels (N,)."""
        raise NotImplementedError(f"{type(self).__module__}.Model takes no labelled set")

    def attach_perceptual(self, network: nn.Module) -> None:
        """`perceptual_network`: the frozen network its losses look through (not saved with the model)."""
        raise NotImplementedError(f"{type(self).__module__}.Model needs no perceptual network")

    @classmethod
    def comparison_pictures(cls, models: dict[str, ZooModel], test: dict[str, torch.Tensor]) -> Grids:
        """`comparison`: the figure of the trained `models` (registry name -> model, in `comparison`'s order) on
        the first rows of this class's test split."""
        raise NotImplementedError(f"{cls.__module__}.Model draws no comparison")
