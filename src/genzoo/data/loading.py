"""Load the preprocessed splits, safely (weights_only) and with a hint when preprocess has not run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from genzoo.engine.errors import DataError

SPLITS = ("train", "val", "test")
_KEYS = {split: ("x", "y", "xb") for split in SPLITS}
_HINT = "run `dvc repro preprocess` to (re)build it"


def read_split_file(folder: Path, split: str, hint: str, device: str | torch.device = "cpu",
                    check: Callable[[object, str], None] | None = None) -> object:
    """folder/<split>.pt loaded safely (weights_only) on `device`; a DataError ending in `hint` (the stage that
    makes it) when the split is unknown or the file is missing or unreadable. `check(data, path)` validates the
    content (each set's own keys, dtypes and shapes) and raises DataError naming the file."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    path = Path(folder) / f"{split}.pt"
    if not path.is_file():
        raise DataError(f"{path}: not found; {hint}.")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt zip/pickle; all mean the same here
        raise DataError(f"{path}: unreadable, not a complete tensor file of ours ({_cause(exc)}); it is corrupt, "
                        f"cut short or written by something else - delete it and {hint}.") from exc
    if check is not None:
        check(data, str(path))
    return data


def _cause(exc: Exception, limit: int = 160) -> str:
    """torch's error in one short clause: its first sentence only (torch goes on with advice to drop weights_only,
    which must not reach the user), cut at a word boundary with '...' when still long."""
    text = " ".join(str(exc).split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".") if text else "no details"
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {first}"


def require_tensors(data: object, keys, where: str, hint: str) -> None:
    """DataError unless `data` is a dict with a tensor under every key (a file of another version, or not ours)."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: holds a {type(data).__name__}, not a dict of tensors; {hint}.")
    missing = [k for k in keys if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}; it was written by another version - {hint}.")


def load_split(processed_dir: Path, split: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """{"x": uint8 (N,1,H,W), "y": int64 (N,), "xb": its fixed binarization, uint8 0/1}, on `device`."""

    def check(data: object, where: str) -> None:
        require_tensors(data, _KEYS[split], where, _HINT)
        x, y = data["x"], data["y"]
        if x.dtype != torch.uint8 or x.ndim != 4 or y.dtype != torch.int64 or y.shape != (len(x),):
            raise DataError(
                f"{where}: unexpected tensors x {x.dtype} {tuple(x.shape)}, y {y.dtype} {tuple(y.shape)} (expected "
                f"x torch.uint8 (N, C, H, W) and y torch.int64 (N,)); {_HINT}."
            )

    return read_split_file(processed_dir, split, _HINT, device, check)


def load_meta(processed_dir: Path) -> dict:
    """The meta.json that preprocess wrote (dataset, classes, counts, seeds, data hash)."""
    path = Path(processed_dir) / "meta.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {_HINT}.") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); {_HINT}.") from exc


def seeded_subset(split: dict[str, torch.Tensor], n: int, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random subset of n rows of a split, in their original order (the whole split for n = 0 or n ≥ N).
    Random, not the first n: MNIST's test file is ordered (its first 5,000 digits are the cleaner ones)."""
    if n == 0 or n >= len(split["y"]):
        return split
    keep = torch.randperm(len(split["y"]), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    keep = keep.to(split["y"].device)
    return {k: v[keep] for k, v in split.items()}


def subset_words(n: int, total: int) -> str:
    """How many of `total` rows `seeded_subset(split, n, seed)` keeps, in a protocol line's words."""
    return f"{n} (a seeded random subset)" if 0 < n < total else "all"


def labelled_subset(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` training images of each class, drawn with `seed`: the few labels that the
    semi-supervised models (autoencoder codes, Triple-GAN) may use. Sorted; the same for every model."""
    generator = torch.Generator().manual_seed(seed)
    labels = y.cpu()
    chosen = []
    for c in labels.unique(sorted=True).tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} training images, fewer than the {per_class} labels asked")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values
