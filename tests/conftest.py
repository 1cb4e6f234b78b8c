"""Shared fixtures: a tiny IDX dataset, preprocessed once, and the `tiny` profile's parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))
sys.path.insert(0, str(Path(__file__).parent))

from compose import compose  # noqa: E402  (pipeline/compose.py: DVC's own Hydra composition)
from tiny_data import write_tiny_mirror  # noqa: E402

from genzoo.data.download import download  # noqa: E402
from genzoo.data.preprocess import preprocess  # noqa: E402
from genzoo.params import parse_params  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids waiting on descheduled threads of a busy machine
    (`pytestmark = pytest.mark.usefixtures("one_thread")` in a test module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch):
    """Unit tests never write to an MLflow store (the end-to-end tests turn it on for their subprocesses)."""
    monkeypatch.setenv("GENZOO_MLFLOW", "off")


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    mirror = write_tiny_mirror(root / "mirror", name="tiny", n_train=300, n_test=100)
    download("tiny", root / "raw", [mirror], use_network=False)
    return Path(preprocess(root / "raw", root / "processed", dataset="tiny", val_size=50, split_seed=0,
                           binarize_seed=0) and root / "processed")


def composed(tmp_path: Path, *overrides: str) -> dict:
    """params.yaml as `dvc exp run -S ...` would compose it, as a dict."""
    out = tmp_path / "params.yaml"
    compose(out, list(overrides))
    return yaml.safe_load(out.read_text())


@pytest.fixture(scope="session")
def tiny_raw_params(tmp_path_factory) -> dict:
    return composed(tmp_path_factory.mktemp("params"), "profile=tiny", "engine.device=cpu")


@pytest.fixture
def tiny_params(tiny_raw_params):
    return parse_params(tiny_raw_params)
