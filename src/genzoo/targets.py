"""src/genzoo/targets.yaml -> strict dataclasses: every paper anchor and target genzoo's results are held to.

The yaml is the one declarative place for them (number, unit, direction, paper and table, the protocol it assumes,
the profiles it applies to); the report stage only renders them beside the measured values. Read with
yaml.safe_load and checked strictly: an unknown or missing key, a wrong type or an unknown model stops with one
line naming the file and the entry. A measured value is looked up by a dotted path in a run's metrics file
(`models.vae.test_nll` in evaluate.json), never computed here.
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
    file: str = "evaluate.json"
    number: float | None = None
    than: str | None = None
    margin: float = 0
    note: str = ""
    table: str = ""

    def text(self) -> str:
        text = self.what
        if self.than is None:
            text += f" {DIRECTIONS[self.direction][0]} {_number(self.number)}" + (f" {self.unit}" if self.unit else "")
        return text + (f" ({self.note})" if self.note else "")

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
class Targets:
    anchors: tuple[Anchor, ...] = ()
    targets: tuple[Target, ...] = ()
    claims: tuple[Claim, ...] = ()
    seed_claims: tuple[SeedClaim, ...] = ()


def measure(entry: Anchor | Target, data: dict | None, key: str | None = None) -> float | None:
    """An anchor's or target's measured value in a run's file, in its unit (a fraction shown in %: × 100)."""
    value = lookup(data, key or entry.key)
    if value is None:
        return None
    return round(value * 100, 10) if entry.unit == "%" else value


_NUMBER = (int, float)
_TYPES = {"model": str, "what": str, "key": str, "file": str, "number": _NUMBER, "spread": _NUMBER, "unit": str,
          "direction": str, "note": str, "paper": str, "table": str, "protocol": str, "profiles": list, "than": str,
          "margin": _NUMBER, "digits": int, "claim": str}
_SECTIONS = {"anchors": Anchor, "targets": Target, "claims": Claim, "seed_claims": SeedClaim}


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
    return cls(**raw)


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
    return Targets(**sections)
