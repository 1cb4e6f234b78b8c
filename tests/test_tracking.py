"""genzoo.engine.tracking: buffered step metrics reach the MLflow run, all of them, in order, also when the stage
fails; the commit a copied tree names; and no other module imports MLflow."""

from __future__ import annotations

import pytest
from helpers import ROOT

from genzoo.engine.tracking import StageRun, git_state
from genzoo.models.registry import load_params


def test_buffered_metrics_all_reach_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_MLFLOW", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(ROOT / "params.yaml")
    writes = []
    with StageRun("train@vae", params, ["run", "vae"], {"profile": "cpu"}) as run:
        original = run._mlflow.MlflowClient.log_batch

        def counted(self, run_id, metrics):
            writes.append(len(metrics))
            return original(self, run_id, metrics=metrics)

        monkeypatch.setattr(run._mlflow.MlflowClient, "log_batch", counted)
        for step in range(1200):  # 2400 metrics: two full batches while training, the rest when the run ends
            run.log_metrics(step, {"train/loss": 0.5 * step, "val@vae": 1.0})
        run_id = run._mlflow.active_run().info.run_id
    assert writes == [1000, 1000, 400]
    history = run._mlflow.MlflowClient().get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(s, 0.5 * s) for s in range(1200)]
    assert len(run._mlflow.MlflowClient().get_metric_history(run_id, "val_vae")) == 1200


def test_a_failed_stage_keeps_its_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_MLFLOW", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(RuntimeError), StageRun("train@vae", params, ["run"], {}) as run:
        run.log_metrics(0, {"train/loss": 3.0})
        run_id = run._mlflow.active_run().info.run_id
        raise RuntimeError("NaN loss")
    client = run._mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "FAILED"
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [3.0]


def test_genzoo_commit_names_the_commit_of_a_copied_tree(monkeypatch):
    named = "f" * 40  # no commit of this repository
    monkeypatch.setenv("GENZOO_COMMIT", named)
    assert git_state(ROOT) == {"commit": named, "dirty": None}
    monkeypatch.delenv("GENZOO_COMMIT")
    assert git_state(ROOT)["commit"] != named


def test_only_tracking_imports_mlflow():
    """Models, the engine and the CLI must run without a tracking library (DESIGN.md §5)."""
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "src" / "genzoo").rglob("*.py")
                 if p.name != "tracking.py" and "import mlflow" in p.read_text()]
    assert offenders == []
    assert (ROOT / "src" / "genzoo" / "engine" / "tracking.py").read_text().count("import mlflow") == 1
