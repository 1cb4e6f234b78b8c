"""Preprocessing the base data (genzoo.data.preprocess): splits, binarization, byte-identical reruns, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import FASHION_CLASSES, write_tiny_fashion_mirror, write_tiny_mirror

from genzoo.data.download import download
from genzoo.data.idx import write_idx
from genzoo.data.loading import load_meta, load_split
from genzoo.data.preprocess import preprocess
from genzoo.engine.errors import DataError

_SEEDS = {"val_size": 50, "split_seed": 1, "binarize_seed": 2}

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture
def tiny_raw(tmp_path) -> Path:
    mirror = write_tiny_mirror(tmp_path / "mirror")
    download("tiny", tmp_path / "raw", mirrors=[mirror], use_network=False)
    return tmp_path / "raw"


def test_preprocess_tiny(tiny_raw, tmp_path):
    meta = preprocess(tiny_raw, tmp_path / "a", dataset="tiny", **_SEEDS)
    assert meta["counts"] == {"train": 250, "val": 50, "test": 100}
    assert meta["classes"] == [str(i) for i in range(10)] and meta["image_shape"] == [1, 28, 28]
    assert load_meta(tmp_path / "a") == meta
    for split, n in meta["counts"].items():
        data = load_split(tmp_path / "a", split)
        assert data["x"].shape == (n, 1, 28, 28) and data["x"].dtype == torch.uint8
        assert data["y"].shape == (n,) and data["y"].dtype == torch.int64
        # every split's one fixed binarization: the test set's for scores, train's for static-binarization recipes
        assert data["xb"].shape == data["x"].shape and set(data["xb"].unique().tolist()) == {0, 1}
        assert not data["xb"][data["x"] == 0].any() and data["xb"][data["x"] == 255].all()  # Bernoulli(x / 255)
    train, val, test = (load_split(tmp_path / "a", split) for split in ("train", "val", "test"))
    assert not torch.equal(val["xb"][:50], test["xb"][:50])  # different derived seeds
    assert not torch.equal(train["xb"][:50], val["xb"][:50])
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


def test_preprocess_names_a_custom_sets_classes_from_its_classes_file(tmp_path):
    mirror = write_tiny_fashion_mirror(tmp_path / "mirror")
    download("tiny-fashion", tmp_path / "raw", mirrors=[mirror], use_network=False)
    meta = preprocess(tmp_path / "raw", tmp_path / "p", dataset="tiny-fashion", **_SEEDS)
    assert meta["dataset"] == "tiny-fashion" and meta["classes"] == list(FASHION_CLASSES)
    (tmp_path / "raw" / "CLASSES").write_text("Coat\nBag\n")  # fewer names than labels: refused by name
    with pytest.raises(DataError, match="label 9 is outside 0..1"):
        preprocess(tmp_path / "raw", tmp_path / "q", dataset="tiny-fashion", **_SEEDS)

