"""Where results go: MLflow (one run per stage run) and the DVC metrics/plots files. Only this module imports
mlflow, so the models, the engine and the tests never need a tracking server.

MLflow writes to `mlflow.db` (SQLite) and `mlruns/` (artifacts) at the repository root unless MLFLOW_TRACKING_URI
says otherwise; GENZOO_MLFLOW=off turns it off. The root is DVC_ROOT, which DVC sets for every stage and points at
the main repository even for queued experiments that run in temporary copies, so their runs are kept too.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from genzoo import __version__
from genzoo.engine.io import read_json, write_json, write_text
from genzoo.params import Params, flatten

EXPERIMENT = "genzoo"


# What decides a result; DVC's own bookkeeping (dvc.lock, outputs) changes during every run and is not "dirty".
SOURCES = ("src", "pipeline", "dvc.yaml", "params.yaml", "pyproject.toml")


def git_state(root: Path = Path(".")) -> dict[str, Any]:
    """The commit the results belong to, and whether uncommitted edits to code or params may have touched them
    (an experiment's `-S` overrides count: they are in params.yaml and in the logged params)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if os.environ.get("GENZOO_COMMIT"):  # a copy of a clean checkout whose .git is not its commit's (a lent GPU)
        return {"commit": os.environ["GENZOO_COMMIT"], "dirty": None}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", *SOURCES)
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def data_hash(processed: Path) -> str:
    meta = Path(processed) / "meta.json"
    return read_json(meta)["data_hash"] if meta.exists() else "unknown"


def provenance(stage: str, params: Params, device: str, processed: Path) -> dict[str, Any]:
    """What every metrics file carries, so a number can always be traced to its params, data and code."""
    return {"stage": stage, "profile": params.run.profile, "device": device, **git_state(),
            "data_hash": data_hash(processed), "dataset": params.data.dataset,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "genzoo": __version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", "")}


class StageRun:
    """One MLflow run for one stage run: params, tags, step metrics and artifacts. A no-op when tracking is off.

    Step metrics are buffered and written FLUSH_METRICS at a time (or every FLUSH_SECONDS, and when the run ends):
    with SQLite one `log_metrics` call is one transaction, ~25 ms on a CPU host, which cost a tiny-profile stage
    more time than its training did and would stall a GPU's loop at every log step."""

    FLUSH_METRICS, FLUSH_SECONDS = 1000, 30.0  # 1000 = MLflow's limit of metrics per log_batch

    def __init__(self, stage: str, params: Params, sections: Iterable[str], tags: dict[str, Any]):
        self.stage, self.tags = stage, {k: str(v) for k, v in tags.items()}
        self.params = flatten({name: params.raw[name] for name in sections})
        self.enabled = os.environ.get("GENZOO_MLFLOW", "on").lower() not in ("off", "0", "false")
        self._mlflow = None
        self._pending: list = []  # mlflow.entities.Metric, oldest first
        self._flushed = time.monotonic()

    def __enter__(self) -> "StageRun":
        if not self.enabled:
            return self
        for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        import mlflow  # slow to import: only stages that track pay for it

        root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            if uri.startswith("sqlite:///"):  # artifacts beside the database, not in whatever folder ran first
                location = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
            else:
                location = None  # a tracking server decides
            mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        mlflow.set_experiment(EXPERIMENT)
        mlflow.start_run(run_name=self.stage, tags={"stage": self.stage, **self.tags})
        mlflow.log_params(self.params)
        self._mlflow = mlflow
        return self

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self._mlflow is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(k.replace("@", "_"), float(v), stamp, step) for k, v in metrics.items()]
        if len(self._pending) >= self.FLUSH_METRICS or time.monotonic() - self._flushed > self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered metrics (in batches MLflow accepts)."""
        if self._mlflow is None or not self._pending:
            return
        run_id = self._mlflow.active_run().info.run_id
        client = self._mlflow.MlflowClient()
        while self._pending:
            batch, self._pending = self._pending[:self.FLUSH_METRICS], self._pending[self.FLUSH_METRICS:]
            client.log_batch(run_id, metrics=batch)
        self._flushed = time.monotonic()

    def log_artifacts(self, path: Path, folder: str | None = None) -> None:
        if self._mlflow is None or not Path(path).exists():
            return
        if Path(path).is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path=folder)
        else:
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._mlflow is not None:
            try:
                self.flush()  # a failed run keeps the curve up to its failure
            finally:
                self._mlflow.end_run(status="FAILED" if exc_type else "FINISHED")


def write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    """A DVC metrics file (JSON; `cache: false` in dvc.yaml so it lives in git)."""
    return write_json(path, metrics)


def write_plot(path: Path, rows: list[dict[str, float]], prefix: str) -> Path:
    """A DVC plots CSV (x = step) of the history rows whose columns start with `prefix` (e.g. 'train/')."""
    picked = [{"step": r["step"], **{k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix)}}
              for r in rows if any(k.startswith(prefix) for k in r)]
    columns = ["step"] + sorted({k for r in picked for k in r if k != "step"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(picked)
    return write_text(path, buffer.getvalue())
