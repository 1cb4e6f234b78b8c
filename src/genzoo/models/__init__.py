"""The model registry and the one on-disk format for trained models.

The contract every model file keeps (DESIGN.md §6), so that one `fit()` trains any of them:

    Config                       dataclass extending genzoo.params.TrainConfig; its fields are the model's
                                 params.yaml section
    Model(config, image_shape, num_classes)
    configure_optimizers()       -> dict[str, Optimizer]
    train_step(batch, opt)       -> dict[str, Tensor]  (detached scalars; the model owns its update order)
    validate(batch)              -> dict[str, Tensor]  (batch means on the validation split)
    sample(n)                    -> (n, C, H, W) floats in [0, 1]        (generative models)
    log_likelihood(x, k)         -> (B,) log p(x) in nats, or a lower bound (likelihood models)
    pictures(data)               -> {name: (images, nrow)} for the report; data = {"test": 100 test images in
                                    [0, 1], "train": the uint8 training split, "test_y": the labels of those test images} (optional)
    extra_scores(data, evaluator) -> {name: float} model-specific metrics for the evaluate stage (optional);
                                    data = {"train", "val", "test": split dicts on the device, "labelled": the
                                    indices of the shared few-label training subset}
    batches_per_step             attribute, default 1: a step that needs k minibatches (a GAN's k
                                    discriminator updates) gets one batch of k * batch_size rows

Batches are dicts of device tensors: "x" uint8 images (B, C, H, W), "y" int64 labels, and on val/test "xb",
the fixed binarization.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from genzoo.errors import GenzooError
from genzoo.io import load_torch, save_torch
from genzoo.models import (aae, autoencoder, cvae, cyclegan, dcgan, ebgan, enhancenet, evaluator, flow_vae, gan, pix2pix,
                           pixelcnn, pixelrnn, simgan, sketchrnn, stackgan, stargan, triplegan, vae)

# The models of the zoo: each gets a train@<name> stage (dvc.yaml's foreach list must equal these keys).
# Most sample; the autoencoder does not (the evaluate stage scores it through `extra_scores` only).
GENERATIVE: dict[str, type[nn.Module]] = {
    "autoencoder": autoencoder.Model,
    "vae": vae.Model,
    "cvae": cvae.Model,
    "gan": gan.Model,
    "dcgan": dcgan.Model,
    "aae": aae.Model,
    "aae_2d": aae.Model,  # the same model with a 2-D code: the paper's picture of the code space (its Figure 2)
    "flow_vae": flow_vae.Model,
    "flow_vae_deep": flow_vae.Model,  # the same model at a larger K: the paper's NLL-vs-K table needs two rows
    "pixelcnn": pixelcnn.Model,
    "pixelrnn": pixelrnn.Model,
    "pixelrnn_diagonal": pixelrnn.Model,  # the same model with the paper's other cell (cell: diagonal), 79.20 nats
    "ebgan": ebgan.Model,
    # the translation family, on derived sets; a second name of the same class is the paper's ablation
    "pix2pix": pix2pix.Model,
    "pix2pix_l1": pix2pix.Model,
    "enhancenet": enhancenet.Model,
    "enhancenet_mse": enhancenet.Model,
    "cyclegan": cyclegan.Model,
    "stargan": stargan.Model,
    "simgan": simgan.Model,
    # the seeds' extras on sets of their own: pen strokes (a VAE of RNNs), captions (text-to-image in two stages)
    "sketchrnn": sketchrnn.Model,
    "stackgan": stackgan.Model,
}

# Models with a stage of their own (DESIGN.md §2): Triple-GAN's classifier is fitted over several seeds by the
# `triplegan` stage, not by a train@ stage.
APPLICATIONS: dict[str, type[nn.Module]] = {"triplegan": triplegan.Model}

# Everything with a params section and a saved form: the frozen evaluator that measures the others, the
# generative models and the application models.
TRAINABLE: dict[str, type[nn.Module]] = {"evaluator": evaluator.Model, **GENERATIVE, **APPLICATIONS}


def build_model(name: str, config, image_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> nn.Module:
    """A fresh model whose initial weights depend on `seed` alone (the global RNG stream is left as it was)."""
    if name not in TRAINABLE:
        raise GenzooError(f"unknown model {name!r}; registered: {', '.join(TRAINABLE)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TRAINABLE[name](config, tuple(image_shape), num_classes)


def save_model(model: nn.Module, name: str, path: Path) -> Path:
    """One file holds everything needed to rebuild the model: name, config, shapes and weights."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_torch({"name": name, "config": dataclasses.asdict(model.config),
                       "image_shape": list(model.image_shape), "num_classes": model.num_classes,
                       "state": state}, path)


def load_model(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    if not Path(path).exists():
        raise GenzooError(f"{path}: no trained model here (run `dvc repro` for its train stage first)")
    blob = load_torch(path)
    name = blob["name"]
    if name not in TRAINABLE:
        raise GenzooError(f"{path}: holds unknown model {name!r}")
    config = TRAINABLE[name].Config(**blob["config"])
    model = build_model(name, config, tuple(blob["image_shape"]), blob["num_classes"])
    model.load_state_dict(blob["state"])
    return model.to(device).eval()
