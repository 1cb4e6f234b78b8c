"""The train stage (`genzoo train`, genzoo.stages.train) as a user runs it: killed outright (SIGKILL), it resumes
from its last checkpoint when run again; a side run keeps its checkpoints beside its own models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from helpers import ROOT, composed

GENZOO = [sys.executable, "-m", "genzoo"]


def _train_vae_until_a_checkpoint(tmp_path, data, checkpoint, *options):
    """`genzoo train vae` in tmp_path (tiny profile, a checkpoint every 10 steps) until `checkpoint` appears.
    Returns the still-running process and what a second run needs (command, env)."""
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=150", "engine.checkpoint_every=10")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    command = [*GENZOO, "train", "vae", "--data", str(data), *options]
    env = {**os.environ, "GENZOO_MLFLOW": "off", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not checkpoint.exists():
        run.kill()
        pytest.fail("no checkpoint appeared: " + run.communicate()[1].decode()[-2000:])
    return run, command, env


def test_killed_training_resumes_from_its_checkpoint(tmp_path, tiny_processed):
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"
    first, command, env = _train_vae_until_a_checkpoint(tmp_path, tiny_processed, checkpoint)
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


def test_a_side_run_keeps_its_checkpoints_beside_its_own_models(tmp_path, tiny_processed):
    """`--models DIR` (a probe beside the pipeline) checkpoints into DIR/.checkpoints: never into the pipeline's
    models/.checkpoints, where a finished side run would delete the pipeline's checkpoint of the same model."""
    checkpoint = tmp_path / "side" / ".checkpoints" / "vae.pt"
    run, _, _ = _train_vae_until_a_checkpoint(tmp_path, tiny_processed, checkpoint,
                                              "--models", "side", "--metrics", "side_metrics")
    run.kill()
    run.wait()
    assert not (tmp_path / "models").exists()
