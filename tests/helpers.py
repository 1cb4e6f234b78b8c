"""What several test files share: the repository's paths, params as DVC composes them, tiny models and batches of
the registry, and copies of a network's state to compare before and after an update. (tests/conftest.py holds
the fixtures; tests/tiny_data.py writes the tiny IDX data set.)"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "pipeline") not in sys.path:
    sys.path.insert(0, str(ROOT / "pipeline"))

SHAPE, CLASSES = (1, 28, 28), 10  # the base images: MNIST-sized, ten classes


def composed(tmp_path: Path, *overrides: str) -> dict:
    """params.yaml as `dvc exp run -S ...` would compose it, as a dict."""
    from compose import compose  # pipeline/compose.py: DVC's own Hydra composition

    out = tmp_path / "params.yaml"
    compose(out, list(overrides))
    return yaml.safe_load(out.read_text())


# ---- tiny data ------------------------------------------------------------------------------------------------

def images(n: int = 8, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> dict[str, torch.Tensor]:
    """A batch of the base images' keys: random uint8 "x", labels 0..9 in turn, and a fixed binarization "xb".
    Not the global seed: pixels drawn from the same stream as the binarization would all binarize to 0."""
    gen = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(n, *shape, generator=gen) * 255).to(torch.uint8)
    return {"x": x, "y": torch.arange(n) % CLASSES, "xb": (torch.rand(n, *shape, generator=gen) < 0.3).to(torch.uint8)}


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n draws of N(shift, I) in d dimensions: stand-in features with known distances."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


def band_images(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Digit-free but structured images: class c lights up its own band of rows, so labels mean something (a few
    labelled rows separate the classes); with a binarization "xb" drawn from their intensities."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = torch.rand(n, *SHAPE, generator=gen) * 0.2
    for i, c in enumerate(y.tolist()):
        x[i, :, 2 * c + 4:2 * c + 7] = 0.9
    x = (x * 255).to(torch.uint8)
    return {"x": x, "y": y, "xb": torch.bernoulli(x.float() / 255, generator=gen).to(torch.uint8)}


def paired_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Stand-in for derived "paired": a = a binary edge-like map, b = a grey digit-like image."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    a = ((torch.rand(n, 1, 28, 28, generator=g) > 0.8) * 255).to(torch.uint8)
    return {"a": a, "b": b, "y": torch.randint(0, 10, (n,), generator=g)}


def superres_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Stand-in for derived "superres": b a grey 28×28 image, a its 7×7 area-downsampled copy."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    a = torch.nn.functional.avg_pool2d(b.float(), 4).round().to(torch.uint8)  # (n, 1, 7, 7) area-downsampled
    return {"a": a, "b": b, "y": torch.randint(0, 10, (n,), generator=g)}


def digit_bars(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """n grey images of one bar each (brightness 150-250), labels 0..9 in turn: a base split to derive from."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 8:20, 12:16] = (150 + 100 * torch.rand(n, 1, 1, 1, generator=gen)).to(torch.uint8)
    return {"x": x, "y": torch.arange(n) % CLASSES}


def captions_batch(n: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """The captions set (genzoo.data.captions) built from digit_bars(n): coloured images with their captions."""
    from genzoo.data.captions import build_captions

    return build_captions(digit_bars(n), torch.Generator().manual_seed(seed))


def model_batch(model: nn.Module, n: int = 8, seed: int = 0, split: str = "train") -> dict[str, torch.Tensor]:
    """A batch of the data `model` learns from: base images, or its derived set built from them."""
    dataset = model.dataset
    if dataset is None:
        return images(n, seed)
    if dataset == "strokes":  # traced from tiny_data's bars: one stroke of two points each
        from tiny_data import tiny_images

        from genzoo.data.strokes import build_mnist_strokes

        labels = torch.arange(n) % CLASSES
        bars = tiny_images(labels, SHAPE[-1], torch.Generator().manual_seed(1000 + seed))[:, None]
        return build_mnist_strokes({"x": bars, "y": labels}, max_len=8)
    from genzoo.data.derived import build

    return build(dataset, images(2 * n, seed), seed=0, split=split)


def quickdraw_npz(path: Path, sizes: dict[str, list[int]], seed: int = 0) -> Path:
    """A sketch-rnn style QuickDraw .npz: keys train/valid/test, object arrays of int16 (P, 3) stroke-3 arrays
    with the given numbers of points (the pen lifts halfway and at the end)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = {}
    for key, lengths in sizes.items():
        obj = np.empty(len(lengths), dtype=object)
        for i, points in enumerate(lengths):
            s = rng.integers(-30, 30, size=(points, 3)).astype(np.int16)
            s[:, 2] = 0
            s[points // 2, 2] = 1
            s[-1, 2] = 1
            obj[i] = s
        arrays[key] = obj
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ---- tiny models ----------------------------------------------------------------------------------------------

def tiny_model(name: str, tiny_params, seed: int = 0, **changes) -> nn.Module:
    """Registry model `name` at the tiny profile's params (`changes` replace some), ready to train: a fresh tiny
    frozen network stands in for the trained one its losses look through, and a semi-supervised model gets a few
    labelled images."""
    from genzoo.models.registry import build_model

    config = dataclasses.replace(tiny_params.model(name), **changes)
    model = build_model(name, config, SHAPE, CLASSES, seed)
    network = model.perceptual_network_for(vars(config))
    if network is not None:
        model.attach_perceptual(build_model(network, tiny_params.model(network), SHAPE, CLASSES).eval())
    if model.few_labels:
        labelled = images(20, seed=99)
        model.attach_labelled(labelled["x"], labelled["y"])
    return model


def tiny_evaluator(seed: int = 0, **changes) -> nn.Module:
    """An untrained evaluator (genzoo.models.evaluator) of a few channels, in eval mode: a stand-in judge."""
    from genzoo.models import evaluator

    torch.manual_seed(seed)
    return evaluator.Model(evaluator.Config(**{"width": 4, "features": 8, **changes})).eval()


def tiny_perceptual(seed: int = 0, **changes) -> nn.Module:
    """An untrained perceptual network (genzoo.models.perceptual) of a few channels, in eval mode."""
    from genzoo.models import perceptual

    torch.manual_seed(seed)
    return perceptual.Model(perceptual.Config(**{"width": 4, "features": 8, **changes})).eval()


# The autoregressive models at a test's size: PixelCNN and PixelRNN's two cells (registry names: pixelcnn,
# pixelrnn, pixelrnn_diagonal).
AUTOREGRESSIVE = {
    "pixelcnn": ("pixelcnn", {"hidden": 4, "blocks": 2, "head": 8}),
    "row_lstm": ("pixelrnn", {"hidden": 4, "layers": 2, "head": 8, "cell": "row"}),
    "diagonal_bilstm": ("pixelrnn", {"hidden": 4, "layers": 2, "head": 8, "cell": "diagonal"}),
}


def autoregressive(name: str, shape=SHAPE, seed: int = 0, double: bool = True, **changes) -> nn.Module:
    """AUTOREGRESSIVE[name] in eval mode, float64 by default, with generic (not zero) biases and initial states:
    a sampler using zeros where the model uses h0 could not pass."""
    import importlib

    file, sizes = AUTOREGRESSIVE[name]
    module = importlib.import_module(f"genzoo.models.{file}")
    torch.manual_seed(seed)
    model = module.Model(module.Config(**{**sizes, **changes}), shape).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(std=0.3)
    return model.double() if double else model


def binary_images(n: int, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    """n random binary images (float64), 40 % of the pixels on."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=gen) < 0.4).double()


# ---- a network's state, copied to compare ---------------------------------------------------------------------

def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Weights and buffers (a BatchNorm's running statistics are state too), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters alone, copied (a BatchNorm's statistics move whenever its net runs in train mode)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    """Each parameter's .grad, copied (None where it has none)."""
    return {k: None if p.grad is None else p.grad.detach().clone() for k, p in module.named_parameters()}


def same(a: dict, b: dict) -> bool:
    """Two copies hold the same names, each bit-identical (or None in both)."""
    return a.keys() == b.keys() and all(
        (a[k] is None and b[k] is None) or (a[k] is not None and b[k] is not None and torch.equal(a[k], b[k]))
        for k in a)


def record_steps(opts: dict[str, torch.optim.Optimizer], before=None, after=None) -> list[str]:
    """Wrap each optimizer's step: the returned list gets its name as it steps, in order; `before(name)` and
    `after(name)` run just before and just after the real step."""
    order: list[str] = []
    for name, opt in opts.items():
        def step(*args, _name=name, _step=opt.step, **kwargs):
            order.append(_name)
            if before is not None:
                before(_name)
            result = _step(*args, **kwargs)
            if after is not None:
                after(_name)
            return result
        opt.step = step
    return order


def validation_only(monkeypatch, make_val) -> tuple[list, dict]:
    """A recipe probe's data, watched: `derived.load_set` answers a val split with make_val() and fails on any
    test split; the attribute classifier's fitting (2 steps) records how many images it saw. Returns (the
    (set, split) pairs read, {"fitted_on": n})."""
    from genzoo.data import derived
    from genzoo.metrics import attributes

    read, seen = [], {}
    fit_attribute_classifier = attributes.fit_attribute_classifier

    def load_set(root, name, split, device="cpu"):
        read.append((name, split))
        if split == "test":
            raise AssertionError("a recipe probe read the test split")
        return make_val()

    def fit(x, colour, stroke, seed, steps):
        seen["fitted_on"] = len(x)
        return fit_attribute_classifier(x, colour, stroke, seed, 2)

    monkeypatch.setattr(derived, "load_set", load_set)
    monkeypatch.setattr(attributes, "fit_attribute_classifier", fit)
    return read, seen
