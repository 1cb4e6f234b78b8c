"""src/genzoo/targets.yaml -> strict dataclasses: every paper anchor and target genzoo's results are held to.

The yaml is the one declarative place for them (number, unit, direction, paper and table, the protocol it assumes,
the profiles it applies to); the report stage only renders them beside the measured values. Read with
yaml.safe_load and checked strictly: an unknown or missing key, a wrong type or an unknown model stops with one
line naming the file and the entry. A measured value is looked up by a dotted path in a run's metrics file
(`models.vae.test_nll` in evaluate.json), never computed here.

Verdicts (DESIGN.md §4). A target is `against: paper` (its number is a paper's own, one of the anchors) or
`against: ours` (our threshold, labelled so). It declares the protocol a verdict needs in `coverage` (classes,
test images, samples, seeds, k of the IWAE bound, inversion steps: minimum counts; binarization: exact). `judge`
says met / not met only when the run covered all of it, and for a paper's number only when the run is of the
paper's recipe; otherwise it says what is missing ("partial: 1 of 10 classes, 500 of 10,000 test images").
"""

from __future__ import annotations

import operator
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import yaml

from genzoo.engine.errors import GenzooError
from genzoo.models.registry import GENERATIVE

TARGETS_FILE = Path(__file__).resolve().parent / "targets.yaml"
STAGE_MODELS = ("evaluator", "anogan", "triplegan")  # measured in files of their own stages, not in evaluate.json
PROFILES = ("cpu", "gpu", "tiny")
AGAINST = ("paper", "ours")
PAPER_RECIPE = "paper"  # what a run of the paper's recipe records as its `recipe` (runs that record none: OURS)
OURS = "ours"  # the gpu profile's own recipe: every run that records none
BINARIZATIONS = ("fixed", "dynamic")  # the training digits: one fixed draw (the papers' binarized MNIST) or fresh
DIRECTIONS = {"<=": ("≤", operator.le), ">=": ("≥", operator.ge), "<": ("<", operator.lt), ">": (">", operator.gt),
              "==": ("=", operator.eq)}


class TargetsError(GenzooError):
    """targets.yaml has an unknown or missing key, a wrong type or an unknown model."""


def lookup(data: dict | None, key: str) -> int | float | None:
    """The number at a dotted path of a metrics file (`models.vae.test_nll`); None where the run has none."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data if isinstance(data, (int, float)) and not isinstance(data, bool) else None


def _number(value: float, digits: int | None = None) -> str:
    return f"{value:.{digits}f}" if digits is not None else str(value)


@dataclass(frozen=True)
class Coverage:
    """The protocol a verdict needs. Counts are minimums (a run that covers fewer is partial); `binarization` is
    how the training digits were binarized and must match."""
    classes: int | None = None
    test_images: int | None = None
    samples: int | None = None
    seeds: int | None = None
    k: int | None = None
    inversion_steps: int | None = None
    binarization: str | None = None
    dataset: str = "mnist"  # the data set the numbers are on: a run on another one is off protocol, whatever else

    def declared(self) -> dict:
        """The protocol beyond the data set (every target has one data set; its text need not repeat it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "dataset" and getattr(self, f.name) is not None}

    def shortfall(self, covered: dict) -> tuple[list[str], list[str]]:
        """(what the run covered less of, where it followed another protocol), as phrases; both empty = full.
        `covered` holds what the run recorded; a declared field it does not record counts as not covered (a run
        that records no data set is on MNIST: every file from before the second data set)."""
        partial, off = [], []
        if covered.get("dataset", "mnist") != self.dataset:
            off.append(f"{covered['dataset']} data, not {self.dataset}")
        for name, needed in self.declared().items():
            have = covered.get(name)
            if name == "binarization":
                if have != needed:
                    off.append(f"{have or 'unrecorded'} binarization, not {needed}")
            elif have is None:
                partial.append(f"{_COUNTED[name]} not recorded")
            elif have < needed:
                partial.append(f"k = {have:,} of {needed:,}" if name == "k" else
                               f"{have:,} of {needed:,} {_COUNTED[name]}")
        return partial, off

    def text(self) -> str:
        return ", ".join(f"binarization {v}" if k == "binarization" else f"k = {v:,}" if k == "k" else
                         f"{v:,} {_COUNTED[k]}" for k, v in self.declared().items())


_COUNTED = {"classes": "classes", "test_images": "test images", "samples": "samples", "seeds": "seeds",
            "k": "k", "inversion_steps": "inversion steps"}


@dataclass(frozen=True)
class Verdict:
    """`word`: met, not met, partial, off protocol, not the paper's recipe, or pending (no run has measured it)."""
    word: str
    partial: tuple[str, ...] = ()
    off: tuple[str, ...] = ()
    recipe: str = ""  # for a paper's number measured by another recipe: how that recipe differs

    def text(self) -> str:
        if self.word in ("met", "not met", "pending"):
            return self.word
        parts = [f"not the paper's recipe ({self.recipe})"] if self.recipe else []
        parts += [f"off protocol: {', '.join(self.off)}"] if self.off and not self.recipe else []  # the recipe's
        parts += [f"partial: {', '.join(self.partial)}"] if self.partial else []
        return "; ".join(parts)

    def coverage_note(self) -> str:
        """Only what the run covered (off protocol, partial), for a cell that already says whose recipe it is."""
        return Verdict("partial", self.partial, self.off).text() if self.partial or self.off else ""


PENDING = Verdict("pending")


@dataclass(frozen=True)
class Anchor:
    """A paper's number, shown beside ours wherever the same measure (`file`, `key`) is."""
    model: str
    what: str
    key: str
    number: float
    unit: str
    direction: str
    paper: str
    protocol: str
    profiles: tuple[str, ...]
    file: str = "evaluate.json"
    table: str = ""
    spread: float | None = None
    note: str = ""
    digits: int | None = None

    def value_text(self) -> str:
        text = _number(self.number, self.digits)
        if self.spread is not None:
            text += f" ± {_number(self.spread, self.digits)}"
        return text + (f" {self.unit}" if self.unit else "")

    def source(self) -> str:
        return self.paper + (f", {self.table}" if self.table else "")

    def text(self) -> str:
        return f"{self.value_text()} ({self.note + '; ' if self.note else ''}{self.source()})"


@dataclass(frozen=True)
class Target:
    """A threshold: met when the value at `key` is `direction` `number` (or the value at `than`, + `margin`)."""
    model: str
    what: str
    key: str
    direction: str
    unit: str
    paper: str
    protocol: str
    profiles: tuple[str, ...]
    against: str
    file: str = "evaluate.json"
    number: float | None = None
    than: str | None = None
    margin: float = 0
    note: str = ""
    table: str = ""
    digits: int | None = None
    coverage: Coverage = Coverage()
    ours_differs: str = ""  # against a paper's number: how our recipe differs from the paper's, in a few words

    @property
    def paper_number(self) -> bool:
        return self.against == "paper"

    def text(self) -> str:
        text = self.what
        if self.than is None:
            text += (f" {DIRECTIONS[self.direction][0]} {_number(self.number, self.digits)}"
                     + (f" {self.unit}" if self.unit else ""))
        whose = "the paper's" if self.paper_number else "ours"
        return text + f" ({whose}{', ' + self.note if self.note else ''})"

    def judge(self, value: float, data: dict | None, covered: dict, recipe: str) -> Verdict:
        """The verdict on one run's `value` (from its file `data`): met / not met only on the full protocol
        (`covered` is what the run recorded it covered) and, for a paper's number, for the paper's recipe."""
        partial, off = self.coverage.shortfall(covered)
        if self.paper_number and recipe != PAPER_RECIPE:
            return Verdict("not the paper's recipe", tuple(partial), tuple(off), self.ours_differs)
        if off:
            return Verdict("off protocol", tuple(partial), tuple(off))
        if partial:
            return Verdict("partial", tuple(partial))
        return Verdict("met" if self.met(value, data) else "not met")

    def met(self, value: float, data: dict | None) -> bool:
        """`value` is measure()'s; a target against another value of the run is not met where that value is missing."""
        if self.than is None:
            reference = self.number
        else:
            reference = measure(self, data, self.than)
            if reference is None:
                return False
            reference += self.margin
        return DIRECTIONS[self.direction][1](value, reference)


@dataclass(frozen=True)
class Claim:
    """What a paper claims where its data set is not ours."""
    model: str
    paper: str
    claim: str


@dataclass(frozen=True)
class SeedClaim:
    """The seeds' GAN-vs-VAE table: what the tutorial says of a model."""
    model: str
    claim: str


@dataclass(frozen=True)
class Peer:
    """Another codebase's training speed for one of our models: its seconds per epoch of 60k MNIST images at
    `batch`, measured with its own script on `gpu`; ours must be `ratio` times faster on the same GPU model."""
    model: str
    batch: int
    script: str  # the peer's script, as its repository names it
    seconds: float  # the peer's seconds per epoch (60k images)
    gpu: str  # the GPU model it was measured on (ours is compared only on the same model)
    ratio: float  # the target: our speed over the peer's
    note: str = ""


@dataclass(frozen=True)
class Targets:
    anchors: tuple[Anchor, ...] = ()
    targets: tuple[Target, ...] = ()
    claims: tuple[Claim, ...] = ()
    seed_claims: tuple[SeedClaim, ...] = ()
    peers: tuple[Peer, ...] = ()


def measure(entry: Anchor | Target, data: dict | None, key: str | None = None) -> float | None:
    """An anchor's or target's measured value in a run's file, in its unit (a fraction shown in %: × 100)."""
    value = lookup(data, key or entry.key)
    if value is None:
        return None
    return round(value * 100, 10) if entry.unit == "%" else value


_NUMBER = (int, float)
_TYPES = {"model": str, "what": str, "key": str, "file": str, "number": _NUMBER, "spread": _NUMBER, "unit": str,
          "direction": str, "note": str, "paper": str, "table": str, "protocol": str, "profiles": list, "than": str,
          "margin": _NUMBER, "digits": int, "claim": str, "against": str, "coverage": dict, "ours_differs": str,
          "batch": int, "script": str, "seconds": _NUMBER, "gpu": str, "ratio": _NUMBER}
_SECTIONS = {"anchors": Anchor, "targets": Target, "claims": Claim, "seed_claims": SeedClaim, "peers": Peer}


def _entry(cls: type, raw: object, where: str, models: set[str]):
    """One entry, checked: its keys exactly those of `cls` (the required ones present), their types, its model."""
    if not isinstance(raw, dict):
        raise TargetsError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    if isinstance(raw.get("model"), str):
        where += f" (model {raw['model']})"
    allowed = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise TargetsError(f"{where}: unknown key {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    missing = [name for name, f in allowed.items() if f.default is MISSING and name not in raw]
    if missing:
        raise TargetsError(f"{where}: missing key {', '.join(map(repr, missing))}")
    for key, value in raw.items():
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
            raise TargetsError(f"{where}: {key} must be a {getattr(_TYPES[key], '__name__', 'number')}, "
                               f"got {value!r}")
    if raw["model"] not in models:
        raise TargetsError(f"{where}: unknown model {raw['model']!r}; known: {', '.join(sorted(models))}")
    if "direction" in raw and raw["direction"] not in DIRECTIONS:
        raise TargetsError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}, got {raw['direction']!r}")
    if "file" in raw and not raw["file"].endswith(".json"):
        raise TargetsError(f"{where}: file must name a metrics .json file, got {raw['file']!r}")
    if "profiles" in raw:
        if not raw["profiles"] or any(p not in PROFILES for p in raw["profiles"]):
            raise TargetsError(f"{where}: profiles must list some of {', '.join(PROFILES)}, got {raw['profiles']!r}")
        raw = {**raw, "profiles": tuple(raw["profiles"])}
    if cls is Target and ("number" in raw) == ("than" in raw):
        raise TargetsError(f"{where}: give exactly one of number (a threshold) or than (another key of the file)")
    if cls is Target and "margin" in raw and "than" not in raw:
        raise TargetsError(f"{where}: margin needs than")
    if cls is Target:
        raw = _target_fields(raw, where)
    return cls(**raw)


def _target_fields(raw: dict, where: str) -> dict:
    """A target's `against` and `coverage`, checked: a paper's number says how our recipe differs and what
    protocol it was measured on."""
    if raw["against"] not in AGAINST:
        raise TargetsError(f"{where}: against must be one of {', '.join(AGAINST)}, got {raw['against']!r}")
    coverage = raw.get("coverage", {})
    allowed = [f.name for f in fields(Coverage)]
    unknown = sorted(set(coverage) - set(allowed))
    if unknown:
        raise TargetsError(f"{where}: coverage: unknown key {', '.join(map(repr, unknown))}; allowed: "
                           f"{', '.join(allowed)}")
    for key, value in coverage.items():
        if key == "dataset":
            if not isinstance(value, str) or not value:
                raise TargetsError(f"{where}: coverage: dataset must be a data set's name, got {value!r}")
        elif key == "binarization":
            if value not in BINARIZATIONS:
                raise TargetsError(f"{where}: coverage: binarization must be one of {', '.join(BINARIZATIONS)}, "
                                   f"got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TargetsError(f"{where}: coverage: {key} must be a positive whole number, got {value!r}")
    if raw["against"] == "paper":
        if "number" not in raw:
            raise TargetsError(f"{where}: against paper needs the paper's number (number), not than")
        if not coverage:
            raise TargetsError(f"{where}: against paper needs coverage: the paper's protocol a verdict must cover")
        if not raw.get("ours_differs"):
            raise TargetsError(f"{where}: against paper needs ours_differs: how our recipe differs from the paper's")
    elif "ours_differs" in raw:
        raise TargetsError(f"{where}: ours_differs is for a target against a paper's number")
    return {**raw, "coverage": Coverage(**coverage)}


def _check_paper_numbers(targets: tuple[Target, ...], anchors: tuple[Anchor, ...], path: Path) -> None:
    """A target against a paper's number holds one of that measure's anchors, exactly (not a rounding of it, not
    another row of the paper's table)."""
    for i, x in enumerate(targets):
        if not x.paper_number:
            continue
        numbers = [a.number for a in anchors if (a.model, a.file, a.key) == (x.model, x.file, x.key)]
        if x.number not in numbers:
            raise TargetsError(f"{path}: targets[{i}] (model {x.model}): against paper, its number {x.number} must "
                               f"be one of the anchors of {x.file}:{x.key} "
                               f"({', '.join(map(str, numbers)) or 'none declared'})")


def load_targets(path: Path = TARGETS_FILE) -> Targets:
    """targets.yaml, checked: an unknown key anywhere stops the report with one line naming the entry."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise TargetsError(f"{path}: cannot read the targets file: {err}") from None
    if not isinstance(raw, dict):
        raise TargetsError(f"{path}: expected sections {', '.join(_SECTIONS)}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise TargetsError(f"{path}: unknown section {', '.join(map(repr, unknown))}; allowed: {', '.join(_SECTIONS)}")
    models = {*GENERATIVE, *STAGE_MODELS}
    sections = {}
    for name, cls in _SECTIONS.items():
        entries = raw.get(name) or []
        if not isinstance(entries, list):
            raise TargetsError(f"{path}: {name} must be a list of entries")
        sections[name] = tuple(_entry(cls, e, f"{path}: {name}[{i}]", models) for i, e in enumerate(entries))
    _check_paper_numbers(sections["targets"], sections["anchors"], path)
    return Targets(**sections)
