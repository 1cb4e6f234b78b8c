"""QuickDraw for Sketch-RNN (genzoo.data.quickdraw): fetching from a mirror with recorded checksums, the offline
error, and the restricted unpickler that reads the .npz object arrays and nothing else. No network."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import quickdraw_npz

from genzoo.data import quickdraw as Q
from genzoo.engine.errors import DataError


def test_fetch_from_mirror_records_and_verifies_checksums(tmp_path, offline):
    mirror = tmp_path / "mirror"
    quickdraw_npz(mirror / "quickdraw" / "cat.npz", {"train": [5, 6], "valid": [4], "test": [4]})
    quickdraw_npz(mirror / "dog.npz", {"train": [5], "valid": [4], "test": [4]}, seed=1)  # flat layout too
    sums, raw = tmp_path / "sums.json", tmp_path / "raw"
    paths = Q.fetch_quickdraw(["cat", "dog"], raw, [tmp_path / "nothing", mirror], sums)
    assert paths == {"cat": raw / "cat.npz", "dog": raw / "dog.npz"}
    recorded = json.loads(sums.read_text())
    assert recorded["cat"] == Q._sha256((mirror / "quickdraw" / "cat.npz").read_bytes())
    assert Q.fetch_quickdraw(["cat"], raw, [mirror], sums)["cat"].read_bytes() == paths["cat"].read_bytes()
    # a tampered raw file is replaced from the mirror; a tampered mirror is refused with both hashes
    paths["cat"].write_bytes(b"junk")
    Q.fetch_quickdraw(["cat"], raw, [mirror], sums)
    assert Q._sha256(paths["cat"].read_bytes()) == recorded["cat"]
    quickdraw_npz(mirror / "quickdraw" / "cat.npz", {"train": [7], "valid": [4], "test": [4]}, seed=5)
    paths["cat"].unlink()
    with pytest.raises(DataError, match="checksum mismatch") as err:
        Q.fetch_quickdraw(["cat"], raw, [mirror], sums)
    assert recorded["cat"] in str(err.value) and Q._sha256((mirror / "quickdraw" / "cat.npz").read_bytes()) in str(
        err.value
    )
    assert not paths["cat"].exists()


def test_fetch_offline_without_mirror_says_how(tmp_path, offline):
    with pytest.raises(DataError, match="data.mirror") as err:
        Q.fetch_quickdraw(["cat"], tmp_path / "raw", [tmp_path], tmp_path / "sums.json")
    assert "GENZOO_DATA_MIRROR" in str(err.value) and "cat" in str(err.value)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_foreign_class(tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buffer.write(pickle.dumps(_Evil(marker), protocol=2))
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("train", "valid", "test"):
            archive.writestr(f"{key}.npy", buffer.getvalue())
    with pytest.raises(DataError, match="refused to load (posix|nt|os).system"):
        Q.read_quickdraw(path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the unpickler itself, on a bare pickle
        Q._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(_Evil(marker)))).load()
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_restricted_unpickler_reads_numpy_object_arrays(protocol):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.arange(9, dtype=np.int16).reshape(3, 3), np.ones((2, 3), np.int16)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (2,)})
    buffer.write(pickle.dumps(obj, protocol=protocol))
    buffer.seek(0)
    back = Q.safe_load_npy(buffer)
    assert back.shape == (2,) and all(np.array_equal(a, b) and a.dtype == np.int16 for a, b in zip(back, obj))
