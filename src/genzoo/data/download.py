"""Fetch the raw IDX files from local mirror folders or the official URLs, verified by checksum.

Checksums are of the *decompressed* content and the decompressed bytes are what we store: mirrors wrap the
same data in different gzip headers, so this makes `data/raw/` identical whichever source served it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from genzoo.engine.errors import DataError
from genzoo.engine.io import write_bytes

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MIRROR_ENV = "GENZOO_DATA_MIRROR"
CLASSES_FILE = "CLASSES"  # a custom dataset's class names (one per line), beside its SHA256SUMS in the mirror
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_SHA = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: fixed checksums (never taken from a mirror), URL bases in order, class names."""

    sha256: dict[str, str]
    urls: tuple[str, ...]
    classes: tuple[str, ...]


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        classes=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": Dataset(
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}

_HOW_TO_MIRROR = (
    f"To fix: set a local mirror with `data.mirror` in params.yaml or the {MIRROR_ENV} environment variable "
    f"(folders separated by '{os.pathsep}'), each a folder holding <dataset>/<file>.gz"
)


def check_name(dataset: str) -> None:
    """Dataset names become folder names, so keep them to a safe alphabet."""
    if not _NAME.fullmatch(dataset):
        raise DataError(f"bad dataset name {dataset!r}: use lower-case letters, digits and '-' (e.g. 'mnist').")


def mirror_folders(param: str) -> list[Path]:
    """The params.yaml mirror (if set) then each folder in $GENZOO_DATA_MIRROR, in order, without duplicates."""
    raw = [param] + os.environ.get(MIRROR_ENV, "").split(os.pathsep)
    folders: list[Path] = []
    for entry in raw:
        if entry.strip() and (folder := Path(entry.strip()).expanduser()) not in folders:
            folders.append(folder)
    return folders


def _read_sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum`-style file (`<sha256>  <file>`); names may carry a '.gz' suffix."""
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            name = name.strip().lstrip("*").removesuffix(".gz")
            if not _SHA.fullmatch(digest.lower()):
                raise DataError(f"{path}: bad line {line!r}; expected '<sha256>  <file>' (64 hex digits).")
            sums[name] = digest.lower()
    missing = [f for f in FILES if f not in sums]
    if missing:
        raise DataError(f"{path}: no checksum for {', '.join(missing)}; add a '<sha256>  <file>' line for each.")
    return sums


def _custom_folder(dataset: str, mirrors: Sequence[Path]) -> Path | None:
    """The first mirror folder <mirror>/<dataset>/ holding a SHA256SUMS: it describes a custom dataset."""
    return next((Path(m) / dataset for m in mirrors if (Path(m) / dataset / "SHA256SUMS").is_file()), None)


def read_classes(path: Path) -> list[str]:
    """A custom dataset's CLASSES file: one class name per line, in label order (blank lines ignored)."""
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path}: expected one distinct class name per line, in label order; got {names}.")
    return names


def expected_sha256(dataset: str, mirrors: Sequence[Path] = ()) -> dict[str, str]:
    """Fixed checksums for a built-in dataset; for a custom one, the first mirror's <dataset>/SHA256SUMS."""
    check_name(dataset)
    if dataset in DATASETS:
        return dict(DATASETS[dataset].sha256)
    if (folder := _custom_folder(dataset, mirrors)) is not None:
        return _read_sums(folder / "SHA256SUMS")
    raise DataError(
        f"unknown dataset {dataset!r}: the built-in ones are {', '.join(DATASETS)}. A custom IDX dataset needs "
        f"a mirror folder holding {dataset}/SHA256SUMS (lines '<sha256>  <file>', sha256 of the decompressed "
        f"files) beside its four files; mirrors searched: {[str(m) for m in mirrors] or 'none'}. {_HOW_TO_MIRROR}."
    )


def dataset_classes(dataset: str, labels: torch.Tensor, raw_dir: Path | None = None) -> list[str]:
    """Class names: fixed for built-ins; for custom data the CLASSES file that `download` copied beside the IDX
    files (raw_dir/CLASSES), else '0'..'K-1' from the labels (K = max label + 1)."""
    if dataset in DATASETS:
        return list(DATASETS[dataset].classes)
    if raw_dir is not None and (Path(raw_dir) / CLASSES_FILE).is_file():
        return read_classes(Path(raw_dir) / CLASSES_FILE)
    return [str(i) for i in range(int(labels.max()) + 1 if labels.numel() else 0)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_ok(path: Path, sha: str) -> bool:
    return path.is_file() and _sha256(path.read_bytes()) == sha


def _fetch_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "genzoo"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _sources(dataset: str, name: str, mirrors: Sequence[Path], use_network: bool, timeout: float, tried: list[str]):
    """Yield (label, loader) for each source in order; sources that do not even exist go straight to `tried`."""
    for mirror in map(Path, mirrors):
        candidates = [mirror / dataset / f"{name}.gz", mirror / dataset / name, mirror / f"{name}.gz", mirror / name]
        found = [c for c in candidates if c.is_file()]
        if not found:
            looked = f"{dataset}/{name}.gz, {dataset}/{name}, {name}.gz, {name}"
            why = f"missing (looked for {looked})" if mirror.is_dir() else "mirror folder does not exist"
            tried.append(f"{mirror}: {why}")
        for path in found:
            yield str(path), path.read_bytes
    urls = DATASETS[dataset].urls if dataset in DATASETS else ()
    if not use_network:
        tried.append("network: not used (use_network=False)")
    elif not urls:
        tried.append(f"network: no URLs for custom dataset {dataset!r}")
    for base in urls if use_network else ():
        url = f"{base}{name}.gz"
        yield url, lambda url=url: _fetch_url(url, timeout)


def download(
    dataset: str,
    out_dir: Path,
    mirrors: Sequence[Path] = (),
    use_network: bool = True,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Put the four decompressed IDX files of `dataset` in `out_dir`; return {file: sha256}.

    Each file is written whole once verified (never a partial one); when a file cannot be had, the folders this
    call created and left empty are removed again, so a failed offline run leaves no empty `data/raw/<dataset>/`."""
    expected = expected_sha256(dataset, mirrors)
    out_dir = Path(out_dir)
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # the folders this call makes
    try:
        _download_files(dataset, out_dir, expected, mirrors, use_network, timeout)
        folder = None if dataset in DATASETS else _custom_folder(dataset, mirrors)
        if folder is not None and (folder / CLASSES_FILE).is_file():  # its class names travel with the files
            names = read_classes(folder / CLASSES_FILE)
            write_bytes(out_dir / CLASSES_FILE, "".join(f"{n}\n" for n in names).encode())
    except BaseException:
        for folder in created:  # innermost first; one that holds a verified file stays
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return dict(expected)


def _download_files(dataset: str, out_dir: Path, expected: dict[str, str], mirrors: Sequence[Path],
                    use_network: bool, timeout: float) -> None:
    for name in FILES:
        target, sha = out_dir / name, expected[name]
        if _file_ok(target, sha):
            continue
        tried: list[str] = []
        for label, load in _sources(dataset, name, mirrors, use_network, timeout, tried):
            try:
                data = load()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error, http.client.HTTPException, ValueError) as exc:
                tried.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            got = _sha256(data)
            if got != sha:
                tried.append(f"{label}: checksum mismatch (got {got[:16]}..., expected {sha[:16]}...)")
                continue
            write_bytes(target, data)
            break
        else:
            lines = "\n".join(f"  - {t}" for t in tried)
            raise DataError(
                f"could not get {name} for dataset {dataset!r} into {target}; sources tried:\n{lines}\n"
                f"{_HOW_TO_MIRROR} (or allow the network)."
            )
