"""Base data: IDX codec, download from mirrors with checksums, preprocess determinism, loading errors."""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from tiny_data import write_tiny_mirror

from genzoo.data.download import FILES, MIRROR_ENV, download, mirror_folders
from genzoo.data.idx import read_idx, write_idx
from genzoo.data.loading import load_meta, load_split
from genzoo.data.preprocess import preprocess
from genzoo.errors import DataError

# Looked up at import, before the autouse fixture below clears the variable for every test.
_REAL_MIRROR = Path(os.environ.get(MIRROR_ENV, "").split(os.pathsep)[0] or Path(__file__).parents[2] / "shared/data")
_SEEDS = {"val_size": 50, "split_seed": 1, "binarize_seed": 2}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the network or see the caller's mirror setting."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def tiny_raw(tmp_path) -> Path:
    mirror = write_tiny_mirror(tmp_path / "mirror")
    download("tiny", tmp_path / "raw", mirrors=[mirror], use_network=False)
    return tmp_path / "raw"


def test_idx_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    labels = torch.arange(5, dtype=torch.uint8)
    for name, tensor in (("a-idx3-ubyte", images), ("b-idx1-ubyte.gz", labels)):
        write_idx(tmp_path / name, tensor)
        assert torch.equal(read_idx(tmp_path / name), tensor)
    first = (tmp_path / "b-idx1-ubyte.gz").read_bytes()
    write_idx(tmp_path / "b-idx1-ubyte.gz", labels)
    assert (tmp_path / "b-idx1-ubyte.gz").read_bytes() == first  # mtime=0: reproducible gzip


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "bad IDX magic"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "oversized"),
        (lambda b: gzip.compress(b)[:-10], "unreadable gzip"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mangle, message):
    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, torch.arange(10, dtype=torch.uint8))
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_download_from_mirror_is_verified_and_idempotent(tmp_path):
    mirror = write_tiny_mirror(tmp_path / "mirror")
    sums = download("tiny", tmp_path / "raw", mirrors=[mirror], use_network=False)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILES)
    listed = dict(line.split()[::-1] for line in (mirror / "tiny" / "SHA256SUMS").read_text().splitlines())
    assert sums == listed
    # Stored decompressed, identical to the mirror's content.
    stored = (tmp_path / "raw" / FILES[0]).read_bytes()
    assert stored == gzip.decompress((mirror / "tiny" / f"{FILES[0]}.gz").read_bytes())
    # Second run: files already verified, so no source is needed at all.
    assert download("tiny", tmp_path / "raw", mirrors=[mirror], use_network=False) == sums


def test_builtin_dataset_refuses_tampered_mirror(tmp_path):
    fake = tmp_path / "mirror" / "mnist"
    fake.mkdir(parents=True)
    for name in FILES:
        shape = (3,) if "labels" in name else (3, 28, 28)
        write_idx(fake / f"{name}.gz", torch.zeros(shape, dtype=torch.uint8))
    # A SHA256SUMS vouching for the fake must not matter: built-in checksums are fixed in code.
    (fake / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {name}\n" for name in FILES))
    out = tmp_path / "raw"
    with pytest.raises(DataError, match="checksum mismatch") as err:
        download("mnist", out, mirrors=[tmp_path / "mirror"], use_network=False)
    assert "expected ba891046e6505d7a" in str(err.value)
    assert list(out.iterdir()) == []  # no partial or wrong file left behind


def test_nothing_available_lists_every_source(tmp_path):
    with pytest.raises(DataError) as err:
        download("mnist", tmp_path / "raw", mirrors=[tmp_path / "nowhere"], use_network=True, timeout=1)
    text = str(err.value)
    assert "mirror folder does not exist" in text
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in text
    assert "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz" in text
    assert "network disabled in tests" in text
    assert MIRROR_ENV in text and "data.mirror" in text

    with pytest.raises(DataError, match="use_network=False") as err:
        download("fashion-mnist", tmp_path / "raw", use_network=False)
    assert MIRROR_ENV in str(err.value)


def test_mirror_env_is_honoured(tmp_path, monkeypatch):
    mirror = write_tiny_mirror(tmp_path / "mirror")
    monkeypatch.setenv(MIRROR_ENV, os.pathsep.join([str(tmp_path / "empty"), str(mirror), str(mirror)]))
    folders = mirror_folders(str(tmp_path / "param"))
    assert folders == [tmp_path / "param", tmp_path / "empty", mirror]
    download("tiny", tmp_path / "raw", mirrors=folders, use_network=False)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILES)


@pytest.mark.parametrize("name", ["../evil", "MNIST", "", "-x", "a b"])
def test_bad_dataset_name_refused(tmp_path, name):
    with pytest.raises(DataError, match="bad dataset name"):
        download(name, tmp_path / "raw", use_network=False)


def test_unknown_dataset_needs_sha256sums(tmp_path):
    with pytest.raises(DataError, match="SHA256SUMS"):
        download("mystery", tmp_path / "raw", mirrors=[tmp_path], use_network=False)


def test_preprocess_tiny(tiny_raw, tmp_path):
    meta = preprocess(tiny_raw, tmp_path / "a", dataset="tiny", **_SEEDS)
    assert meta["counts"] == {"train": 250, "val": 50, "test": 100}
    assert meta["classes"] == [str(i) for i in range(10)] and meta["image_shape"] == [1, 28, 28]
    assert load_meta(tmp_path / "a") == meta
    for split, n in meta["counts"].items():
        data = load_split(tmp_path / "a", split)
        assert data["x"].shape == (n, 1, 28, 28) and data["x"].dtype == torch.uint8
        assert data["y"].shape == (n,) and data["y"].dtype == torch.int64
        if split != "train":
            assert data["xb"].shape == data["x"].shape and set(data["xb"].unique().tolist()) == {0, 1}
    val, test = load_split(tmp_path / "a", "val"), load_split(tmp_path / "a", "test")
    assert not torch.equal(val["xb"][:50], test["xb"][:50])  # different derived seeds
    # Same inputs, second run: byte-identical files.
    preprocess(tiny_raw, tmp_path / "b", dataset="tiny", **_SEEDS)
    for name in ("train.pt", "val.pt", "test.pt", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # Another split seed gives another split.
    preprocess(tiny_raw, tmp_path / "c", dataset="tiny", **{**_SEEDS, "split_seed": 7})
    assert not torch.equal(load_split(tmp_path / "c", "val")["y"], val["y"])


@pytest.mark.parametrize(
    ("mangle", "message"),
    [(lambda b: b[:-7], "truncated"), (lambda b: b"\x00\x00\x09\x03" + b[4:], "bad IDX magic")],
)
def test_preprocess_refuses_corrupt_file(tiny_raw, tmp_path, mangle, message):
    path = tiny_raw / "t10k-images-idx3-ubyte"
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        preprocess(tiny_raw, tmp_path / "out", dataset="tiny", **_SEEDS)
    assert str(path) in str(err.value)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_preprocess_refuses_count_mismatch_and_big_val(tiny_raw, tmp_path):
    write_idx(tiny_raw / "train-labels-idx1-ubyte", torch.zeros(299, dtype=torch.uint8))
    with pytest.raises(DataError, match="299 labels"):
        preprocess(tiny_raw, tmp_path / "out", dataset="tiny", **_SEEDS)
    write_idx(tiny_raw / "train-labels-idx1-ubyte", torch.zeros(300, dtype=torch.uint8))
    with pytest.raises(DataError, match="val_size 300"):
        preprocess(tiny_raw, tmp_path / "out", dataset="tiny", **{**_SEEDS, "val_size": 300})


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match="dvc repro preprocess") as err:
        load_split(tmp_path, "train")
    assert "train.pt" in str(err.value)
    (tmp_path / "val.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="unreadable"):
        load_split(tmp_path, "val")
    with pytest.raises(DataError, match="unknown split"):
        load_split(tmp_path, "dev")
    with pytest.raises(DataError, match="dvc repro preprocess"):
        load_meta(tmp_path)


@pytest.mark.skipif(not (_REAL_MIRROR / "mnist" / f"{FILES[0]}.gz").is_file(), reason="no local MNIST mirror")
def test_real_mnist_from_local_mirror(tmp_path):
    sums = download("mnist", tmp_path, mirrors=[_REAL_MIRROR], use_network=False)
    assert len(read_idx(tmp_path / "t10k-labels-idx1-ubyte")) == 10_000
    assert sums["train-images-idx3-ubyte"].startswith("ba891046")
