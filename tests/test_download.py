"""Downloading the base data (genzoo.data.download): from mirrors with checksums, idempotent, tampered files
refused, every source listed when none answers. No test reaches the network (the `offline` fixture)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch
from tiny_data import FASHION_CLASSES, write_tiny_fashion_mirror, write_tiny_mirror

from genzoo.data.download import CLASSES_FILE, FILES, MIRROR_ENV, dataset_classes, download, mirror_folders
from genzoo.data.idx import read_idx, write_idx
from genzoo.engine.errors import DataError

# Looked up at import, before the `offline` fixture clears the variable for every test.
_REAL_MIRROR = Path(os.environ.get(MIRROR_ENV, "").split(os.pathsep)[0] or Path(__file__).parents[2] / "shared/data")

pytestmark = pytest.mark.usefixtures("offline")


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
    assert not out.exists()  # no partial or wrong file left behind, and no empty folder either


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


def test_failed_offline_download_leaves_no_empty_folder(tmp_path):
    """`genzoo download --offline` with no mirror: the error, and no empty data/raw/mnist/ (nor data/raw/) behind;
    a folder that existed before stays, and so does a file already verified in it."""
    out = tmp_path / "data" / "raw" / "mnist"
    with pytest.raises(DataError, match="could not get train-images-idx3-ubyte"):
        download("mnist", out, mirrors=[tmp_path / "nowhere"], use_network=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a failed download left folders behind"

    # Three of the four files in a mirror: the verified ones stay (a rerun needs only the fourth), no partial file.
    mirror = write_tiny_mirror(tmp_path / "mirror")
    (mirror / "tiny" / f"{FILES[-1]}.gz").unlink()
    out = tmp_path / "raw" / "tiny"
    with pytest.raises(DataError, match=f"could not get {FILES[-1]}"):
        download("tiny", out, mirrors=[mirror], use_network=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES[:-1])  # no temp or partial file

    existing = tmp_path / "kept"
    existing.mkdir()
    with pytest.raises(DataError):
        download("mnist", existing, use_network=False)
    assert existing.is_dir()


def test_custom_dataset_class_names_travel_with_its_files(tmp_path):
    """A custom set's CLASSES (beside its SHA256SUMS) is copied into the raw folder and names its classes."""
    mirror = write_tiny_fashion_mirror(tmp_path / "mirror")
    download("tiny-fashion", tmp_path / "raw", mirrors=[mirror], use_network=False)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted([*FILES, CLASSES_FILE])
    labels = torch.arange(10)
    assert dataset_classes("tiny-fashion", labels, tmp_path / "raw") == list(FASHION_CLASSES)
    assert dataset_classes("tiny", labels, tmp_path / "nothing-here") == [str(i) for i in range(10)]
    assert dataset_classes("fashion-mnist", labels)[9] == "Ankle boot"  # built-in: fixed in code
    (mirror / "tiny-fashion" / CLASSES_FILE).write_text("Bag\nBag\n")
    with pytest.raises(DataError, match="one distinct class name per line"):
        download("tiny-fashion", tmp_path / "raw2", mirrors=[mirror], use_network=False)


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


@pytest.mark.skipif(not (_REAL_MIRROR / "mnist" / f"{FILES[0]}.gz").is_file(), reason="no local MNIST mirror")
def test_real_mnist_from_local_mirror(tmp_path):
    sums = download("mnist", tmp_path, mirrors=[_REAL_MIRROR], use_network=False)
    assert len(read_idx(tmp_path / "t10k-labels-idx1-ubyte")) == 10_000
    assert sums["train-images-idx3-ubyte"].startswith("ba891046")
