"""The model registry and the one on-disk format for trained models.

A registry line names a model and the file (module of genzoo.models) whose `Model` class it is. Modules are
imported only when a model is asked for, so a stage that trains the VAE runs no other model's code, and
dvc.yaml can list exactly the files each stage depends on (genzoo.tools.dag). The contract every `Model` keeps
is genzoo.models.base.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from genzoo.engine.errors import GenzooError
from genzoo.engine.io import load_torch, save_torch
from genzoo.params import PARAMS_FILE, Params, parse_sections, read_params_file

EVALUATOR = "evaluator"  # the frozen classifier that measures the others (its own train_evaluator stage)
PERCEPTUAL = "perceptual"  # the frozen network EnhanceNet's losses look through (train_perceptual), never a judge
FROZEN = (EVALUATOR, PERCEPTUAL)  # trained once by a stage of their own, then only read

# The zoo: each gets a train@<name> stage. A second name of the same file is the same model with other params
# (the paper's ablation, or its second table row).
GENERATIVE_MODULES = {
    "autoencoder": "autoencoder",
    "vae": "vae",
    "cvae": "cvae",
    "gan": "gan",
    "dcgan": "dcgan",
    "aae": "aae",
    "aae_2d": "aae",  # a 2-D code: the paper's picture of the code space (its Figure 2)
    "flow_vae": "flow_vae",
    "flow_vae_deep": "flow_vae",  # a larger K: the paper's NLL-vs-K table needs two rows
    "pixelcnn": "pixelcnn",
    "pixelrnn": "pixelrnn",
    "pixelrnn_diagonal": "pixelrnn",  # the paper's other cell (cell: diagonal)
    "ebgan": "ebgan",
    "pix2pix": "pix2pix",
    "pix2pix_l1": "pix2pix",  # the paper's L1-only ablation: adversarial weight 0
    "enhancenet": "enhancenet",  # perceptual + texture + adversarial (ENet-PAT)
    "enhancenet_mse": "enhancenet",  # pixel MSE (ENet-E)
    "cyclegan": "cyclegan",
    "stargan": "stargan",
    "simgan": "simgan",
    "sketchrnn": "sketchrnn",
    "stackgan": "stackgan",
}

# Models fitted by a stage of their own (DESIGN.md §2): Triple-GAN over several seeds, by `triplegan`.
APPLICATION_MODULES = {"triplegan": "triplegan"}

MODULES = {EVALUATOR: "evaluator", PERCEPTUAL: "perceptual", **GENERATIVE_MODULES, **APPLICATION_MODULES}


class _Registry(Mapping):
    """name -> Model class, importing a model's file on first use."""

    def __init__(self, modules: Mapping[str, str]):
        self._modules = dict(modules)

    def __getitem__(self, name: str) -> type:
        if name not in self._modules:
            raise KeyError(name)
        return importlib.import_module(f"genzoo.models.{self._modules[name]}").Model

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


GENERATIVE: Mapping[str, type] = _Registry(GENERATIVE_MODULES)
APPLICATIONS: Mapping[str, type] = _Registry(APPLICATION_MODULES)
TRAINABLE: Mapping[str, type] = _Registry(MODULES)


def module_file(name: str) -> str:
    """The source file of a registered model, relative to the repository root (what its stages depend on)."""
    if name not in MODULES:
        raise GenzooError(f"unknown model {name!r}; registered: {', '.join(MODULES)}")
    return f"src/genzoo/models/{MODULES[name]}.py"


def load_params(path: Path = PARAMS_FILE, models: Iterable[str] | None = None) -> Params:
    """params.yaml with its fixed sections and the sections of `models` (default: every model) checked in full
    against their Config; the other model sections only by name, so a stage runs no model code it does not use."""
    return parse_params(read_params_file(path), source=str(path), models=models)


def parse_params(raw, source: str = "params.yaml", models: Iterable[str] | None = None) -> Params:
    """`load_params` of an already-read mapping."""
    names = list(MODULES) if models is None else list(dict.fromkeys(models))
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        raise GenzooError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(MODULES)}")
    return parse_sections(raw, source=source, schemas={n: TRAINABLE[n].Config for n in names},
                          other_sections=[n for n in MODULES if n not in names])


def build_model(name: str, config, image_shape: tuple[int, ...], num_classes: int, seed: int = 0):
    """A fresh model whose initial weights depend on `seed` alone (the global RNG stream is left as it was)."""
    import torch

    if name not in TRAINABLE:
        raise GenzooError(f"unknown model {name!r}; registered: {', '.join(TRAINABLE)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TRAINABLE[name](config, tuple(image_shape), num_classes)


def save_model(model, name: str, path: Path) -> Path:
    """One file holds everything needed to rebuild the model: name, config, shapes and weights."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_torch({"name": name, "config": dataclasses.asdict(model.config),
                       "image_shape": list(model.image_shape), "num_classes": model.num_classes,
                       "state": state}, path)


def load_model(path: Path, device="cpu"):
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
