"""params.yaml -> strict, typed dataclasses.

Every command loads and checks the *whole* file before doing any work, so a typo anywhere (an unknown key, a
wrong type, a value out of range) stops the run at once with a message naming the key and the file. Sections
mirror the DVC stages: `run`, `data`, `engine`, `evaluate`, and one section per model (`evaluator`, `vae`, ...),
whose schema is the model file's own `Config`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

if typing.TYPE_CHECKING:
    import torch

from genzoo.engine.errors import ParamsError

PARAMS_FILE = Path("params.yaml")


def param(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with its allowed range: `lr: float = param(1e-3, gt=0)`."""
    checks = {"gt": gt, "ge": ge, "le": le, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=checks)
    return field(default=default, metadata=checks)


@dataclass
class TrainConfig:
    """What every trainable model's section has; a model's `Config` extends it."""

    epochs: int = param(10, gt=0)
    batch_size: int = param(128, gt=0)
    lr: float = param(1e-3, gt=0)
    # burda: 3^i passes at 10^(-i/7); goodfellow: lr / 1.000004 every update, floor 1e-6; exponential: × the
    # section's lr_decay per epoch past its lr_decay_start_epoch (Triple-GAN's) (genzoo.engine.training)
    lr_schedule: str = param("constant", choices=("constant", "cosine", "burda", "goodfellow", "exponential"))
    # this model's training precision on a CPU: engine = engine.cpu_precision; fp32 or bf16 = this model's own
    # (EngineParams.cpu_precision_for resolves it; on CUDA engine.precision rules every model)
    cpu_precision: str = param("engine", choices=("engine", "fp32", "bf16"))
    max_steps: int = param(0, ge=0)  # 0 = the epochs decide; > 0 caps the run inside an epoch (a cpu profile's budget)


@dataclass
class RunParams:
    profile: str = param("cpu", choices=("cpu", "gpu", "tiny"))
    seed: int = param(0, ge=0)


@dataclass
class DataParams:
    dataset: str = "mnist"
    mirror: str = ""  # a local folder holding <dataset>/<file>.gz; GENZOO_DATA_MIRROR adds more
    val_size: int = param(5000, gt=0)
    split_seed: int = param(0, ge=0)
    binarize_seed: int = param(0, ge=0)
    labelled_per_class: int = param(10, gt=0)  # the labels semi-supervised models may use (100 for MNIST)
    labelled_seed: int = param(0, ge=0)  # which ones: one seeded draw shared by every model
    derive_seed: int = param(0, ge=0)  # the derived sets of the translation models (strokes, colours, fonts)


@dataclass
class EngineParams:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = param("bf16", choices=("bf16", "fp32"))  # on CUDA
    cpu_precision: str = param("fp32", choices=("bf16", "fp32"))  # on a CPU (bf16: AVX512-BF16 / AMX units)
    compile: bool = False
    cuda_graphs: bool = True  # replay each training step as one CUDA graph (CUDA only; ignored on CPU)
    monitor_samples: int = param(1000, ge=0)  # samples classified by the evaluator at each eval step (0 = off)
    log_every: int = param(50, gt=0)
    eval_every: int = param(1000, gt=0)
    checkpoint_every: int = param(1000, gt=0)
    # intra-op CPU threads: auto = this process's share of the cores among the live genzoo trainings (a lone run
    # keeps PyTorch's default); N = exactly N (genzoo.engine.processes)
    threads: int | str = param("auto", ge=1, choices=("auto",))
    # data-parallel ranks `genzoo train` runs on this machine through torchrun (genzoo.engine.distributed); 1 = one
    # plain process. Under a torchrun of your own (several machines), torchrun's world size rules instead.
    processes: int = param(1, ge=1)

    def precision_on(self, device: torch.device | str, config: TrainConfig | None = None) -> str:
        """The precision a run on `device` trains at: `precision` on CUDA; on a CPU, the CPU precision of the
        model section `config` (cpu_precision_for), or `cpu_precision` without one (evaluation, inversion)."""
        kind = device if isinstance(device, str) else device.type
        return self.precision if kind.startswith("cuda") else self.cpu_precision_for(config)

    def cpu_precision_for(self, config: TrainConfig | None = None) -> str:
        """The one place a model's CPU training precision is resolved: its section's `cpu_precision` when that
        names one (fp32 | bf16), else (`engine`, or no section) this engine's `cpu_precision`."""
        own = getattr(config, "cpu_precision", "engine")
        return self.cpu_precision if own == "engine" else own


@dataclass
class EvaluateParams:
    n_samples: int = param(10000, gt=0)  # samples per model for mode coverage
    iwae_k: int = param(5000, gt=0)  # importance samples for the NLL bound
    iwae_images: int = param(10000, ge=0)  # test images scored for NLL; 0 = all
    batch_size: int = param(500, gt=0)
    kid_subsets: int = param(100, gt=0)
    kid_subset_size: int = param(1000, gt=1)
    pr_k: int = param(3, gt=0)  # neighbours defining the k-NN manifolds of precision/recall
    parzen_samples: int = param(10000, gt=0)  # samples the Parzen window is fitted on (GAN 2014: 10k)
    parzen_val_points: int = param(1000, gt=0)  # validation images that pick sigma
    parzen_test_points: int = param(10000, gt=0)  # test images scored


@dataclass
class SaturationParams:
    model: str = param("gan", choices=("gan", "dcgan"))  # the GAN whose generator losses are compared
    steps: int = param(300, gt=0)  # training steps recorded for each loss


@dataclass
class AnoganParams:
    """The `anogan` stage (Schlegl et al. 2017, one-vs-rest protocol of Ruff et al. 2018)."""

    classes: list[int] = param(list(range(10)), ge=0)  # the normal classes, one one-class task each
    # updates of each one-class model, the same for every class (the classes differ in size: ~5k-6k images, so
    # 4200 is ~100 passes over one at batch 128); the `dcgan`, `vae` and `autoencoder` sections, these steps
    gan_steps: int = param(4200, gt=0)
    vae_steps: int = param(4200, gt=0)
    ae_steps: int = param(4200, gt=0)
    inversion_steps: int = param(500, gt=0)  # Γ: the paper's 500 backpropagation steps on z
    inversion_lr: float = param(0.05, gt=0)  # Adam's step on z
    lam: float = param(0.1, ge=0, le=1)  # λ: weight of the discrimination loss (the paper's 0.1)
    vae_samples: int = param(10, gt=0)  # Monte Carlo samples averaged in the VAE's -ELBO score
    test_images: int = param(0, ge=0)  # test images scored (a seeded subset); 0 = all
    chunk: int = param(10000, gt=0)  # images inverted at once (memory)
    bench_single: int = param(20, ge=0)  # images inverted one at a time to time the unbatched loop (0 = skip)
    figure_images: int = param(8, gt=0)  # normal and anomalous test digits in each class's figure



@dataclass
class ToyParams:
    """The `gan_toy` stage: the GAN paper's theory on a 1-D mixture of Gaussians (seconds on a CPU)."""

    means: list[float] = param([2.5, 4.5])  # the mixture's components, away from 0 where an untrained G puts its mass
    stds: list[float] = param([0.5, 0.5], gt=0)
    weights: list[float] = param([0.5, 0.5], gt=0)  # normalized to sum 1
    steps: int = param(3000, gt=0)  # training steps (one D update then one G update each)
    snapshots: list[int] = param([0, 100, 500, 3000], ge=0)  # steps drawn in the Figure 1 panels (0 = untrained)
    noise: str = param("normal", choices=("normal", "uniform"))  # z in one dimension: N(0, 1) or U(-1, 1)
    d_steps: int = param(1, gt=0)  # D updates per G update
    batch_size: int = param(256, gt=1)
    lr: float = param(0.001, gt=0)  # Adam, β = (0.5, 0.999), both nets; cosine-annealed to 0 over `steps`
    gen_widths: list[int] = param([32, 32], gt=0)  # hidden layers of G: 1 -> ... -> 1
    disc_widths: list[int] = param([64, 64], gt=0)  # hidden layers of D: 1 -> ... -> logit
    d_converge_steps: int = param(2000, gt=0)  # Adam steps of D alone (fixed G) for the max-over-D check
    early_steps: int = param(50, gt=0)  # the window the early gradient norms average over
    log_every: int = param(50, gt=0)  # steps between rows of the V / C(G) / JSD curve
    grid_min: float = param(-2.0)
    grid_max: float = param(8.0)
    grid_points: int = param(300, gt=1)  # bins on [grid_min, grid_max]
    seed: int = param(0, ge=0)


@dataclass
class StrokesParams:
    """The `strokes` stage: Sketch-RNN's pen-stroke sequences (stroke-5), traced from MNIST or read from QuickDraw."""

    source: str = param("mnist", choices=("mnist", "quickdraw"))  # quickdraw needs the network or data.mirror
    categories: list[str] = param(["cat", "pig"])  # QuickDraw sketch-rnn category files (source quickdraw only)
    per_category: int = param(0, ge=0)  # QuickDraw rows kept per category and split (0 = all)
    max_len: int = param(32, gt=1)  # N_max: longer sequences are dropped (the paper drops them too)
    epsilon: float = param(1.0, ge=0)  # Ramer-Douglas-Peucker tolerance in pixels (the paper simplifies with RDP)


@dataclass
class CompareParams:
    """The `compare` stage: the seeds' GAN-vs-VAE table measured, over several training seeds."""

    models: list[str] = param(["vae", "gan", "dcgan", "ebgan"])  # registry names; their own params sections
    seeds: list[int] = param([0, 1, 2], ge=0)  # run.seed reuses the train@ model; the others are trained here
    n_samples: int = param(10000, gt=0)  # samples per model and seed for the sample metrics
    memorization_samples: int = param(2000, gt=0)  # samples (and test digits) matched to their nearest training digit
    figure_pairs: int = param(10, gt=0)  # sample | nearest training digit pairs in the memorization figure


FIXED_SECTIONS = {"run": RunParams, "data": DataParams, "engine": EngineParams, "evaluate": EvaluateParams,
                  "saturation": SaturationParams, "anogan": AnoganParams, "gan_toy": ToyParams,
                  "strokes": StrokesParams, "compare": CompareParams}


@dataclass
class Params:
    run: RunParams
    data: DataParams
    engine: EngineParams
    evaluate: EvaluateParams
    saturation: SaturationParams
    anogan: AnoganParams
    gan_toy: ToyParams
    strokes: StrokesParams
    compare: CompareParams
    models: dict[str, Any]  # section name -> that model's Config
    raw: dict  # the file as read, for logging flattened params
    source: str = "params.yaml"

    def model(self, name: str) -> Any:
        if name not in self.models:
            raise ParamsError(f"{self.source}: section `{name}` was not loaded (this command checked "
                              f"{', '.join(sorted(self.models)) or 'no model sections'})")
        return self.models[name]


def read_params_file(path: Path = PARAMS_FILE) -> Any:
    """The params file as YAML, or a clear error."""
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repository root, or pass --params)")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None


def parse_sections(raw: Any, source: str, schemas: Mapping[str, type], other_sections: Iterable[str] = ()) -> Params:
    """Check the fixed sections and the model sections of `schemas` in full (every one must be present and
    complete); `other_sections` are model sections known by name only (present, a mapping). The registry
    hands the schemas in (genzoo.models.registry.load_params): this module imports no model."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    others = [name for name in other_sections if name not in schemas]
    known = {**FIXED_SECTIONS, **schemas}
    unknown = sorted(set(raw) - set(known) - set(others))
    if unknown:
        raise ParamsError(f"{source}: unknown section(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted([*known, *others]))}")
    missing = sorted((set(known) | set(others)) - set(raw))
    if missing:
        raise ParamsError(f"{source}: missing section(s) {', '.join(missing)}")
    for name in others:
        if not isinstance(raw[name], Mapping):
            raise ParamsError(f"{source}: {name}: expected a mapping, got {type(raw[name]).__name__}")
    sections = {name: build(schema, raw[name], f"{source}: {name}") for name, schema in known.items()}
    return Params(**{k: sections[k] for k in FIXED_SECTIONS},
                  models={k: sections[k] for k in schemas}, raw=raw, source=source)


def build(cls: type, values: Any, where: str, require_all: bool = True) -> Any:
    """Make `cls` from a mapping, refusing unknown or missing keys, wrong types and out-of-range values."""
    if not isinstance(values, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParamsError(f"{where}.{unknown[0]}: unknown parameter; known: {', '.join(known)}")
    kwargs = {}
    for name, f in known.items():
        key = f"{where}.{name}"
        if name not in values:
            if require_all:
                raise ParamsError(f"{key}: missing (every parameter must be written out so DVC tracks it)")
            continue
        value = _coerce(values[name], hints[name], key)
        _check_range(value, f.metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # `int | str`: the first type the value is
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key)
            except ParamsError:
                pass
        names = " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
        raise ParamsError(f"{key}: expected {names}, got {type(value).__name__} {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string; accept what parses cleanly
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise ParamsError(f"{key}: unsupported parameter type {hint}")
    raise ParamsError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r}")


def _check_range(value: Any, rules: Mapping, key: str) -> None:
    values = value if isinstance(value, list) else [value]
    bounded = any(rules.get(bound) is not None for bound in ("gt", "ge", "le"))
    for v in values:
        word = isinstance(v, str)  # a field of words and numbers (`auto | N`): words from choices, numbers in bounds
        if rules.get("choices") is not None and (word or not bounded) and v not in rules["choices"]:
            raise ParamsError(f"{key}: {v!r} is not one of {', '.join(map(str, rules['choices']))}")
        if word:
            continue
        if rules.get("gt") is not None and not v > rules["gt"]:
            raise ParamsError(f"{key}: {v!r} must be > {rules['gt']}")
        if rules.get("ge") is not None and not v >= rules["ge"]:
            raise ParamsError(f"{key}: {v!r} must be >= {rules['ge']}")
        if rules.get("le") is not None and not v <= rules["le"]:
            raise ParamsError(f"{key}: {v!r} must be <= {rules['le']}")


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'vae': {'lr': 1e-3}} -> {'vae.lr': 1e-3}: the form MLflow and `dvc params diff` show."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
