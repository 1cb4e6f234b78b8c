"""A stage killed outright (SIGKILL) resumes from its last checkpoint when run again, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, composed

GENZOO = [sys.executable, "-m", "genzoo"]


def test_killed_training_resumes_from_its_checkpoint(tmp_path, tiny_processed):
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=150", "engine.checkpoint_every=10")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    command = [*GENZOO, "train", "vae", "--data", str(tiny_processed)]
    env = {**os.environ, "GENZOO_MLFLOW": "off", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src")}
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint appeared: " + first.stderr.read().decode()[-2000:]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / "models" / "vae" / "model.pt").exists()  # it really died before finishing

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming from" in second.stdout
    summary = yaml.safe_load((tmp_path / "metrics" / "vae.json").read_text())
    assert summary["resumed_from"] > 0 and summary["steps"] == 150 * 7
    # the checkpoint kept the first run's training time: the summary counts both parts (the steps it kept)
    assert summary["seconds_per_epoch"] == pytest.approx(summary["train_seconds"] / 150, abs=1e-3)
    assert (tmp_path / "models" / "vae" / "model.pt").exists() and not checkpoint.exists()


def test_only_tracking_imports_mlflow():
    """Models, the engine and the CLI must run without a tracking library (DESIGN.md §5)."""
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "src" / "genzoo").rglob("*.py")
                 if p.name != "tracking.py" and "import mlflow" in p.read_text()]
    assert offenders == []
    assert Path(ROOT / "src" / "genzoo" / "tracking.py").read_text().count("import mlflow") == 1
