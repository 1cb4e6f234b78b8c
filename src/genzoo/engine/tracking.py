"""Where results go: MLflow (one run per stage run) and the DVC metrics/plots files. Only this module imports
mlflow, so the models, the engine and the tests never need a tracking server.

MLflow writes to `mlflow.db` (SQLite) and `mlruns/` (artifacts) at the repository root unless MLFLOW_TRACKING_URI
says otherwise; GENZOO_MLFLOW=off turns it off. The root is DVC_ROOT, which DVC sets for every stage and points at
the main repository even for queued experiments that run in temporary copies, so their runs are kept too.

A run's status says how its stage ended: FINISHED, FAILED (an error), KILLED (SIGTERM, Ctrl-C, a deadline). A
process killed outright (SIGKILL, a lost machine) cannot say; its run is closed as KILLED when the stage next
starts, unless that start resumes it: a training stage keeps its run's id in its checkpoint and continues the
same run, so one run holds one curve however often it was stopped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

try:
    import fcntl
except ImportError:  # Windows: no flock; a store is then opened by one stage at a time only by luck
    fcntl = None

import torch

from genzoo import __version__
from genzoo.engine.errors import GenzooError, Interrupted
from genzoo.engine.io import read_json, write_json, write_text
from genzoo.engine.processes import process_alive, process_start, usable_cores
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


def hardware(device: torch.device | str = "cpu") -> str:
    """The machine a number came from, as a reader would compare machines: the GPU's name (when on a GPU) and the
    CPU's model with the cores this process may use (a speed depends on both)."""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        cpu = ""
    host = f"{cpu or platform.processor() or platform.machine()}, {usable_cores()} cores"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(device)} ({host})"
    return host


def command_line(argv: list[str] | None = None) -> str:
    """The command that made a file, as its user would type it again (`genzoo ...` for the CLI, however started)."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name if argv else ""
    head = ["genzoo"] if program in ("genzoo", "__main__.py", "-m") else ([argv[0]] if argv else [])
    return shlex.join([*head, *argv[1:]])


def record_provenance(device: torch.device | str = "cpu", command: str | None = None) -> dict[str, Any]:
    """What a file that is not a stage's metrics (a benchmark, a run ledger, a timing, a reproduction) carries:
    its commit, whether the tree was clean, the command and the hardware."""
    return {**git_state(), "command": command or command_line(), "hardware": hardware(device),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
            "python": platform.python_version()}


def data_hash(processed: Path) -> str:
    meta = Path(processed) / "meta.json"
    return read_json(meta)["data_hash"] if meta.exists() else "unknown"


def provenance(stage: str, params: Params, device: str, processed: Path) -> dict[str, Any]:
    """What every metrics file carries, so a number can always be traced to its params, data and code."""
    return {"stage": stage, "profile": params.run.profile, "device": device, **git_state(),
            "command": command_line(), "hardware": hardware(_device_of(device)),
            "data_hash": data_hash(processed), "dataset": params.data.dataset,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "genzoo": __version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", "")}


def _device_of(description: str) -> str:
    """`describe_device`'s words back to a device: "cpu (N cores)" is the CPU, anything else names a GPU."""
    return "cpu" if description.startswith("cpu") else "cuda"


def sqlite_database(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store (a server, a folder)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def store_lock(uri: str):
    """Held while a process opens a SQLite store: two stages starting together on a new store (`make run` runs two
    at a time, `dvc queue start -j 2` too) both ran MLflow's schema migrations and one failed (`table
    _alembic_tmp_experiments already exists`). An flock on `<database>.lock`; other stores need none."""
    database = sqlite_database(uri)
    if database is None or fcntl is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


class StageRun:
    """One MLflow run for one stage run: params, tags, step metrics and artifacts. A no-op when tracking is off.

    Step metrics are buffered and written FLUSH_METRICS at a time (or every FLUSH_SECONDS, and when the run ends):
    with SQLite one `log_metrics` call is one transaction, ~25 ms on a CPU host, which cost a tiny-profile stage
    more time than its training did and would stall a GPU's loop at every log step.

    `resume` (a run id kept with a checkpoint) continues that run instead of opening one: its metrics go on from
    where the killed process left them (a step it had already logged is not logged twice). Every run is tagged
    with its stage, the DVC experiment's name (`dvc_experiment`, empty outside an experiment) and the process
    running it (host, pid and start time): on entering, runs of the same stage left RUNNING by a process of this
    host that is gone are closed as KILLED. While the run is open, SIGTERM ends it as KILLED (`fit()` turns
    SIGTERM into a checkpoint first)."""

    FLUSH_METRICS, FLUSH_SECONDS = 1000, 30.0  # 1000 = MLflow's limit of metrics per log_batch

    def __init__(self, stage: str, params: Params, sections: Iterable[str], tags: dict[str, Any],
                 resume: str | None = None):
        self.stage, self.tags, self.resume = stage, {k: str(v) for k, v in tags.items()}, resume
        self.params = flatten({name: params.raw[name] for name in sections})
        self.enabled = os.environ.get("GENZOO_MLFLOW", "on").lower() not in ("off", "0", "false")
        self.run_id: str | None = None
        self._mlflow = None
        self._pending: list = []  # mlflow.entities.Metric, oldest first
        self._flushed = time.monotonic()
        self._logged: dict[str, int] = {}  # a resumed run: the last step each metric already has
        self._sigterm = None

    def __enter__(self) -> "StageRun":
        if not self.enabled:
            return self
        for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        import mlflow  # slow to import: only stages that track pay for it

        root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        with store_lock(uri):  # the first query creates or migrates a SQLite store: one process at a time
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                database = sqlite_database(uri)  # artifacts beside it, not in whatever folder ran first
                location = (database.parent / "mlruns").resolve().as_uri() if database else None  # else the server's
                mlflow.create_experiment(EXPERIMENT, artifact_location=location)
            experiment = mlflow.set_experiment(EXPERIMENT)
        client = mlflow.MlflowClient()
        resumed = self._resumable(client, experiment.experiment_id)
        self._close_orphans(client, experiment.experiment_id, keep=resumed.info.run_id if resumed else None)
        identity = {"dvc_experiment": os.environ.get("DVC_EXP_NAME", ""), "genzoo.host": socket.gethostname(),
                    "genzoo.pid": str(os.getpid()), "genzoo.process_start": process_start(os.getpid())}
        if resumed is None:
            mlflow.start_run(run_name=self.stage, tags={"stage": self.stage, **self.tags, **identity})
            mlflow.log_params(self.params)
        else:
            mlflow.start_run(run_id=resumed.info.run_id)  # RUNNING again, same id, same curve
            times = int(resumed.data.tags.get("genzoo.resumed", "0")) + 1
            mlflow.set_tags({**self.tags, **identity, "genzoo.resumed": str(times)})
            self._log_new_params(mlflow, resumed)
            self._logged = {key: max(m.step for m in client.get_metric_history(resumed.info.run_id, key))
                            for key in resumed.data.metrics}
            print(f"continuing MLflow run {resumed.info.run_id} of {self.stage} (resumed {times}x)")
        self.run_id = mlflow.active_run().info.run_id
        self._mlflow = mlflow
        try:
            self._sigterm = signal.signal(signal.SIGTERM, self._terminated)
        except ValueError:  # not the main thread: leave signals alone
            self._sigterm = None
        return self

    def _terminated(self, signum, frame) -> None:
        raise Interrupted(f"{self.stage} stopped by SIGTERM; run the same command again (training resumes from its "
                          "last checkpoint)")

    def _resumable(self, client, experiment_id: str):
        """The run to continue: `resume`, when this store has it (else a new run starts, with a note)."""
        if not self.resume:
            return None
        try:
            run = client.get_run(self.resume)
        except Exception as err:  # another tracking store, or a deleted run
            print(f"note: the checkpoint's MLflow run {self.resume} is not in this store ({type(err).__name__}); "
                  f"a new run starts")
            return None
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
            print(f"note: the checkpoint's MLflow run {self.resume} is deleted or elsewhere; a new run starts")
            return None
        tags = run.data.tags
        if (run.info.status == "RUNNING" and tags.get("genzoo.host") == socket.gethostname()
                and tags.get("genzoo.pid") not in (None, str(os.getpid()))
                and process_alive(int(tags["genzoo.pid"]), tags.get("genzoo.process_start", ""))):
            raise GenzooError(f"{self.stage}: its checkpoint's run {self.resume} is being trained right now by "
                              f"process {tags['genzoo.pid']}; wait for it, or stop it first")
        return run

    def _close_orphans(self, client, experiment_id: str, keep: str | None) -> None:
        """Runs of this stage left RUNNING by a process of this host that no longer runs: KILLED."""
        host = socket.gethostname()
        quoted = self.stage.replace("'", "\\'")
        orphans = client.search_runs([experiment_id], f"tags.stage = '{quoted}' and attributes.status = 'RUNNING'")
        for run in orphans:
            tags = run.data.tags
            if run.info.run_id == keep or tags.get("genzoo.host") != host or not tags.get("genzoo.pid", "").isdigit():
                continue  # resumed now, or another machine's (it may be running), or too old to say
            if not process_alive(int(tags["genzoo.pid"]), tags.get("genzoo.process_start", "")):
                client.set_terminated(run.info.run_id, status="KILLED")
                print(f"note: MLflow run {run.info.run_id} of {self.stage} was left RUNNING by a process that is "
                      f"gone (pid {tags['genzoo.pid']}): closed as KILLED")

    def _log_new_params(self, mlflow, run) -> None:
        """A resumed run keeps its params (MLflow refuses to change one); a param new since, or one that changed
        without changing the checkpoint's fingerprint (an engine setting), is recorded as a tag."""
        old = run.data.params
        mlflow.log_params({k: v for k, v in self.params.items() if k not in old})
        changed = {f"resumed_with.{k}": str(v) for k, v in self.params.items() if k in old and str(v) != old[k]}
        if changed:
            mlflow.set_tags(changed)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self._mlflow is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        for key, value in metrics.items():
            key = key.replace("@", "_")
            if step > self._logged.get(key, -1):  # a resumed run re-logs what it already had: once is enough
                self._pending.append(Metric(key, float(value), stamp, step))
        if len(self._pending) >= self.FLUSH_METRICS or time.monotonic() - self._flushed > self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered metrics (in batches MLflow accepts)."""
        if self._mlflow is None or not self._pending:
            return
        client = self._mlflow.MlflowClient()
        while self._pending:
            batch, self._pending = self._pending[:self.FLUSH_METRICS], self._pending[self.FLUSH_METRICS:]
            client.log_batch(self.run_id, metrics=batch)
        self._flushed = time.monotonic()

    def log_artifacts(self, path: Path, folder: str | None = None) -> None:
        if self._mlflow is None or not Path(path).exists():
            return
        if Path(path).is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path=folder)
        else:
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._mlflow is None:
            return
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, (Interrupted, KeyboardInterrupt)):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            self.flush()  # a failed run keeps the curve up to its failure
        finally:
            self._mlflow.end_run(status=status)


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
