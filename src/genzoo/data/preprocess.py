"""Decode the raw IDX files once into small uint8 tensors: train/val/test splits plus a fixed binarization.

Everything is a pure function of the raw bytes and three seeds, and the files are written byte-identically
on every run, so DVC sees no change when nothing changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from genzoo.data.download import FILES, check_name, dataset_classes
from genzoo.data.idx import idx_bytes, read_idx
from genzoo.engine.errors import DataError
from genzoo.engine.io import save_torch, write_json

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def derived_seed(seed: int, purpose: str) -> int:
    """Independent, stable seeds per purpose (e.g. val vs test binarization) from one user seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """One draw of dynamic binarization: pixel ~ Bernoulli(x / 255), as uint8 0/1."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=gen) < x.float() / 255).to(torch.uint8)


def _read(raw_dir: Path, name: str) -> tuple[torch.Tensor, str]:
    """Tensor and sha256 of the decompressed file (re-encoding gives back exactly the bytes read_idx accepted)."""
    path = raw_dir / name
    if not path.exists() and (raw_dir / f"{name}.gz").exists():
        path = raw_dir / f"{name}.gz"
    tensor = read_idx(path)
    return tensor, hashlib.sha256(idx_bytes(tensor)).hexdigest()


def _check_pair(raw_dir: Path, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    image_file, label_file = (raw_dir / f for f in _SPLIT_FILES[split])
    if images.ndim != 3:
        raise DataError(
            f"{image_file}: expected images of shape (N, H, W), got {tuple(images.shape)}; "
            "it is not an image file - check the file names."
        )
    if labels.ndim != 1:
        raise DataError(
            f"{label_file}: expected labels of shape (N,), got {tuple(labels.shape)}; "
            "it is not a label file - check the file names."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels; "
            "the files do not belong together - download them again."
        )


def preprocess(
    raw_dir: Path, out_dir: Path, *, dataset: str, val_size: int, split_seed: int, binarize_seed: int
) -> dict:
    """Write train.pt, val.pt, test.pt ({"x": uint8 (N,1,H,W), "y": int64 (N,), "xb": uint8 0/1 (N,1,H,W)}) and
    meta.json into `out_dir`; return the meta dict. "xb" is one seeded binarization per split: the fixed test
    set every likelihood is scored on, and the static binarized MNIST the papers train on (a model's
    `binarization: static`; dynamic models draw afresh from "x" at every step)."""
    check_name(dataset)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    tensors, sha256 = {}, {}
    for name in FILES:
        tensors[name], sha256[name] = _read(raw_dir, name)
    x_train, y_train = (tensors[f] for f in _SPLIT_FILES["train"])
    x_test, y_test = (tensors[f] for f in _SPLIT_FILES["test"])
    _check_pair(raw_dir, "train", x_train, y_train)
    _check_pair(raw_dir, "test", x_test, y_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{raw_dir}: train images are {tuple(x_train.shape[1:])} but test images are "
            f"{tuple(x_test.shape[1:])}; the files come from different datasets."
        )
    classes = dataset_classes(dataset, torch.cat([y_train, y_test]), raw_dir)
    for split, labels in (("train", y_train), ("test", y_test)):
        if labels.numel() and int(labels.max()) >= len(classes):
            raise DataError(
                f"{raw_dir / _SPLIT_FILES[split][1]}: label {int(labels.max())} is outside "
                f"0..{len(classes) - 1} for dataset {dataset!r}; the file is not from this dataset."
            )
    n_train = len(x_train)
    if not 0 <= val_size < n_train:
        raise DataError(
            f"val_size {val_size} must be in 0..{n_train - 1} ({raw_dir} has {n_train} training "
            "images); change val_size in params.yaml."
        )

    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(split_seed))
    train_idx, val_idx = perm[: n_train - val_size], perm[n_train - val_size :]
    splits = {
        "train": {"x": x_train[train_idx], "y": y_train[train_idx]},
        "val": {"x": x_train[val_idx], "y": y_train[val_idx]},
        "test": {"x": x_test.clone(), "y": y_test},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        data["x"] = data["x"].unsqueeze(1).contiguous()  # (N, 1, H, W)
        data["y"] = data["y"].long()
        data["xb"] = binarize(data["x"], derived_seed(binarize_seed, f"binarize:{split}"))
        save_torch(data, out_dir / f"{split}.pt")

    meta = {
        "dataset": dataset,
        "classes": classes,
        "counts": {split: len(data["y"]) for split, data in splits.items()},
        "image_shape": [1, *x_train.shape[1:]],
        "val_size": val_size,
        "split_seed": split_seed,
        "binarize_seed": binarize_seed,
        "data_hash": hashlib.sha256("".join(sha256[f] for f in FILES).encode()).hexdigest(),
        "files": sha256,
    }
    write_json(out_dir / "meta.json", meta)
    return meta
