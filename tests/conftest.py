"""Shared fixtures: a tiny IDX dataset, preprocessed once, and the `tiny` profile's parameters. (Helpers that are
not fixtures live in tests/helpers.py.)"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
sys.path.insert(0, str(Path(__file__).parent))

from helpers import ROOT, composed  # noqa: E402, F401  (ROOT: what older imports of conftest still read)
from tiny_data import write_tiny_mirror  # noqa: E402

from genzoo.data.download import download  # noqa: E402
from genzoo.data.preprocess import preprocess  # noqa: E402
from genzoo.models.registry import parse_params  # noqa: E402


def pytest_collection_modifyitems(session, config, items):
    """The slow modules first (stable otherwise): with `make test`'s workers (pytest-xdist, --dist loadfile), the
    longest module starts at once and the unit tests fill the other worker meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids waiting on descheduled threads of a busy machine
    (`pytestmark = pytest.mark.usefixtures("one_thread")` in a test module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_classifier(monkeypatch):
    """The few-label classifier (genzoo.metrics.few_labels) at a test's size: such tests check plumbing, not the
    protocol's numbers."""
    import genzoo.metrics.few_labels as few_labels

    monkeypatch.setattr(few_labels, "HIDDEN", 32)
    monkeypatch.setattr(few_labels, "STEPS", 150)


@pytest.fixture
def offline(monkeypatch):
    """No network (urllib refuses every URL), and no mirror setting of the caller's (GENZOO_DATA_MIRROR)."""
    import urllib.error
    import urllib.request

    from genzoo.data.download import MIRROR_ENV

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch):
    """Unit tests never write to an MLflow store (the end-to-end tests turn it on for their subprocesses)."""
    monkeypatch.setenv("GENZOO_MLFLOW", "off")


@pytest.fixture(scope="session", autouse=True)
def _own_runtime_dir(tmp_path_factory):
    """The tests' trainings (and their subprocesses) register among themselves, never with the machine's real runs,
    whose CPU threads they would otherwise shrink (genzoo.engine.processes)."""
    from genzoo.engine.processes import RUNTIME_ENV

    before = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = str(tmp_path_factory.mktemp("runtime"))
    yield
    if before is None:
        os.environ.pop(RUNTIME_ENV, None)
    else:
        os.environ[RUNTIME_ENV] = before


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    mirror = write_tiny_mirror(root / "mirror", name="tiny", n_train=300, n_test=100)
    download("tiny", root / "raw", [mirror], use_network=False)
    return Path(preprocess(root / "raw", root / "processed", dataset="tiny", val_size=50, split_seed=0,
                           binarize_seed=0) and root / "processed")


@pytest.fixture(scope="session")
def tiny_raw_params(tmp_path_factory) -> dict:
    return composed(tmp_path_factory.mktemp("params"), "profile=tiny", "engine.device=cpu")


@pytest.fixture
def tiny_params(tiny_raw_params):
    """A fresh parse of a copy: a test that edits its params (`tiny_params.raw[...] = ...`) leaves the session's
    composed dict, and so every later test, as it was."""
    return parse_params(copy.deepcopy(tiny_raw_params))


@pytest.fixture
def tiny_params_file(tmp_path, monkeypatch):
    """The tiny profile composed to a file (what --params takes) and a tiny IDX mirror to download from."""
    from compose import compose
    from tiny_data import write_tiny_mirror

    params = tmp_path / "tiny.yaml"
    compose(params, ["profile=tiny", "data.dataset=tiny"])
    monkeypatch.setenv("GENZOO_DATA_MIRROR", str(write_tiny_mirror(tmp_path / "mirror")))
    return params
