"""QuickDraw's sketch-rnn files for the `strokes` stage (Ha & Eck 2018): fetched from a local mirror folder or the
network with their SHA-256 recorded on the first download and checked after, read without trusting their
pickles, and converted to genzoo.data.strokes' stroke-5 format on the 28x28 canvas.

The .npz files hold object arrays (one int16 (P, 3) stroke-3 array per sketch), which numpy can only read through
pickle: `safe_load_npy` unpickles with an allow-list of the numpy classes that rebuild arrays, so a file that
names anything else (os.system, ...) is refused before it runs.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import pickle
import re
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from genzoo.data.download import MIRROR_ENV
from genzoo.engine.errors import DataError
from genzoo.engine.io import read_json, write_bytes, write_json

_CATEGORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]*")

QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/sketchrnn/{category}.npz"
_QD_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # our split -> the npz key
_HOW_TO_MIRROR = (
    f"set a local mirror with `data.mirror` in params.yaml or the {MIRROR_ENV} environment variable, each a "
    f"folder holding quickdraw/<category>.npz or <category>.npz (the sketch-rnn files of {QUICKDRAW_URL})"
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_quickdraw(
    categories: list[str], raw_dir: Path, mirrors: list[Path], checksums: Path, timeout: float = 60.0
) -> dict[str, Path]:
    """Put raw_dir/<category>.npz for each category; return {category: path}.

    Source: the first mirror folder holding quickdraw/<category>.npz or <category>.npz, else QUICKDRAW_URL.
    The sha256 of each file is recorded in the JSON `checksums` file ({category: sha256}) the first time it
    is fetched and verified on every later fetch, and on files already in raw_dir: a mismatch is a DataError
    naming the file and both hashes. Files are written atomically."""
    raw_dir, checksums = Path(raw_dir), Path(checksums)
    try:
        sums = read_json(checksums) if checksums.is_file() else {}
    except ValueError as exc:
        raise DataError(f"{checksums}: not valid JSON ({exc}); fix or delete it (it is rebuilt on download).")
    if not isinstance(sums, dict):
        raise DataError(f"{checksums}: expected a JSON object {{category: sha256}}.")
    paths: dict[str, Path] = {}
    for category in categories:
        if not _CATEGORY.fullmatch(category):
            raise DataError(f"bad QuickDraw category {category!r}: use letters, digits, spaces, '-' or '_'.")
        target = raw_dir / f"{category}.npz"
        expected = sums.get(category)
        if target.is_file() and expected and _sha256(target.read_bytes()) == expected:
            paths[category] = target
            continue
        data, source = None, None
        for mirror in map(Path, mirrors):
            for candidate in (mirror / "quickdraw" / f"{category}.npz", mirror / f"{category}.npz"):
                if candidate.is_file():
                    data, source = candidate.read_bytes(), str(candidate)
                    break
            if data is not None:
                break
        if data is None:
            url = QUICKDRAW_URL.format(category=urllib.parse.quote(category))
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "genzoo"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    data, source = response.read(), url
            except (OSError, http.client.HTTPException, ValueError) as exc:
                looked = ", ".join(str(m) for m in mirrors) or "none"
                raise DataError(
                    f"could not get QuickDraw category {category!r}: no mirror holds it (mirrors: {looked}) and "
                    f"the download from {url} failed ({type(exc).__name__}: {exc}). To fix: {_HOW_TO_MIRROR}."
                ) from exc
        got = _sha256(data)
        if expected is None:
            sums[category] = got
            write_json(checksums, sums)
        elif got != expected:
            raise DataError(
                f"{source}: checksum mismatch for QuickDraw {category}.npz: got sha256 {got}, expected {expected} "
                f"(recorded in {checksums}). Replace the file, or delete its entry from {checksums} if the "
                f"new file is trusted."
            )
        write_bytes(target, data)
        paths[category] = target
    return paths


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays only: any other global (os.system, builtins.eval, ...) is refused, so a
    downloaded .npz cannot run code however it was crafted."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays are allowed)")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5: an array from its raw bytes
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')
}


def safe_load_npy(handle) -> np.ndarray:
    """One .npy stream; object arrays through the restricted unpickler (numpy's own loader would need
    allow_pickle=True, i.e. trust the file)."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    if dtype.hasobject:
        array = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
        if not isinstance(array, np.ndarray):
            raise pickle.UnpicklingError(f"expected a numpy array, got a {type(array).__name__}")
        return array
    count = int(np.prod(shape))
    data = handle.read(count * dtype.itemsize)
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_quickdraw(path: Path) -> dict[str, list[np.ndarray]]:
    """A sketch-rnn .npz (keys train/valid/test, object arrays of int16 (P, 3) stroke-3 arrays (dx, dy,
    pen_lift)) -> {"train", "val", "test": list of int16 (P, 3) arrays}, read with the restricted unpickler."""
    path = Path(path)
    out: dict[str, list[np.ndarray]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for split, key in _QD_SPLITS.items():
                if f"{key}.npy" not in names:
                    raise DataError(f"{path}: no {key!r} array; expected the sketch-rnn keys train/valid/test.")
                with archive.open(f"{key}.npy") as handle:
                    array = safe_load_npy(io.BytesIO(handle.read()))
                sketches = []
                for s in array.reshape(-1):
                    s = np.asarray(s)
                    if s.ndim != 2 or s.shape[1] != 3:
                        raise DataError(f"{path}: {key} holds a {s.shape} array, not a (P, 3) stroke-3 sketch.")
                    sketches.append(s.astype(np.int16))
                out[split] = sketches
    except DataError:
        raise
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, EOFError, TypeError) as exc:
        raise DataError(f"{path}: unreadable QuickDraw file ({type(exc).__name__}: {exc}); delete it to refetch.")
    return out
