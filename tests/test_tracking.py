"""genzoo.engine.tracking: buffered step metrics reach the MLflow run, all of them, in order, also when the stage
fails; how a run's status says the stage ended (FINISHED, FAILED, KILLED), runs orphaned by a killed process
closed as KILLED, a resumed stage continuing its run as one curve; the tags every run carries; the commit a copied
tree names; and no other module imports MLflow. All against a real SQLite store in a temp folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import ROOT

from genzoo.engine.errors import GenzooError, Interrupted
from genzoo.engine.processes import process_start
from genzoo.engine.tracking import EXPERIMENT, StageRun, git_state
from genzoo.models.registry import load_params


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One SQLite store for the module (creating one runs MLflow's migrations: ~10 s on a busy 2-core host); each
    test uses its own stage names."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def store(database, monkeypatch):
    monkeypatch.setenv("GENZOO_MLFLOW", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return load_params(ROOT / "params.yaml")


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in _client().get_metric_history(run_id, key))


def test_buffered_metrics_all_reach_mlflow(store, monkeypatch):
    params = store
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


def test_a_failed_stage_keeps_its_curve(store):
    params = store
    with pytest.raises(RuntimeError), StageRun("train@failing", params, ["run"], {}) as run:
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


@pytest.mark.parametrize(("error", "status"), [(Interrupted("SIGTERM"), "KILLED"), (KeyboardInterrupt(), "KILLED"),
                                                (RuntimeError("boom"), "FAILED")])
def test_the_status_says_how_the_stage_ended(store, error, status):
    with pytest.raises(type(error)), StageRun(f"status_{status}", store, ["run"], {}) as run:
        raise error
    assert _client().get_run(run.run_id).info.status == status


def test_sigterm_ends_the_run_as_killed(store):
    """Outside fit() (which turns SIGTERM into a checkpoint first) SIGTERM stops the stage at once, as KILLED."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="sigterm stopped by SIGTERM"), StageRun("sigterm", store, ["run"], {}) as run:
        os.kill(os.getpid(), signal.SIGTERM)
    assert _client().get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) == before  # the stage's handler is gone with the stage


def test_every_run_names_its_experiment_and_process(store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "sunny-pram")
    with StageRun("train@tagged", store, ["run"], {"profile": "cpu"}) as run:
        pass
    tags = _client().get_run(run.run_id).data.tags
    assert tags["dvc_experiment"] == "sunny-pram" and tags["stage"] == "train@tagged" and tags["profile"] == "cpu"
    assert (tags["genzoo.pid"], tags["genzoo.host"]) == (str(os.getpid()), socket.gethostname())
    assert tags["genzoo.process_start"] == process_start(os.getpid())
    monkeypatch.delenv("DVC_EXP_NAME")
    with StageRun("train@tagged", store, ["run"], {}) as plain:  # `dvc repro`, or a command run by hand
        pass
    assert _client().get_run(plain.run_id).data.tags["dvc_experiment"] == ""


def test_runs_orphaned_by_a_killed_process_are_closed_when_the_stage_next_starts(store):
    """A SIGKILLed process leaves its run RUNNING; the next start of the same stage closes it as KILLED. Runs of a
    process that still runs, of another host (it may be running there) and of other stages are left alone."""
    with StageRun("download", store, ["run"], {}):
        pass  # the experiment exists from here on
    client = _client()
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        def orphan(stage, pid, on=host):
            return client.create_run(experiment, tags={"stage": stage, "genzoo.host": on, "genzoo.pid": str(pid),
                                                        "genzoo.process_start": process_start(pid) or "1"}).info.run_id

        killed = orphan("train@orphans", dead.pid)
        running = orphan("train@orphans", alive.pid)
        elsewhere = orphan("train@orphans", dead.pid, on="another-host")
        other_stage = orphan("train@others", dead.pid)
        with StageRun("train@orphans", store, ["run"], {}) as run:
            pass
        status = {name: client.get_run(run_id).info.status for name, run_id in
                  [("killed", killed), ("running", running), ("elsewhere", elsewhere), ("other", other_stage),
                   ("new", run.run_id)]}
        assert status == {"killed": "KILLED", "running": "RUNNING", "elsewhere": "RUNNING", "other": "RUNNING",
                          "new": "FINISHED"}
    finally:
        alive.kill()
        alive.wait()


def test_a_resumed_stage_continues_its_run_as_one_curve(store, capsys):
    """Killed at step 9 (its metrics up to there logged), resumed from a checkpoint of step 5: the same run goes on,
    the steps it already had are not logged twice, an engine setting changed in between is noted as a tag."""
    with pytest.raises(Interrupted), StageRun("train@resumed", store, ["run", "engine"], {}) as first:
        for step in range(10):
            first.log_metrics(step, {"train/loss": 10.0 - step})
        first.log_metrics(9, {"val/elbo": 1.0})
        raise Interrupted("SIGTERM")
    assert _client().get_run(first.run_id).info.status == "KILLED"
    raw = {**store.raw, "engine": {**store.raw["engine"], "threads": 1}}
    changed = type(store)(**{**store.__dict__, "raw": raw})
    with StageRun("train@resumed", changed, ["run", "engine"], {}, resume=first.run_id) as second:
        for step in range(5, 15):  # a checkpoint of step 5: steps 6-9 come again, with the same values
            second.log_metrics(step, {"train/loss": 10.0 - step, "val/elbo": 2.0})
    assert second.run_id == first.run_id
    run = _client().get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert _history(first.run_id, "train/loss") == [(s, 10.0 - s) for s in range(15)]
    assert _history(first.run_id, "val/elbo") == [(9, 1.0), *((s, 2.0) for s in range(10, 15))]
    assert run.data.tags["genzoo.resumed"] == "1" and run.data.tags["resumed_with.engine.threads"] == "1"
    assert run.data.params["engine.threads"] == "auto"  # MLflow keeps a run's params; the change is the tag
    assert f"continuing MLflow run {first.run_id}" in capsys.readouterr().out
    runs = _client().search_runs([run.info.experiment_id], "tags.stage = 'train@resumed'")
    assert len(runs) == 1


def test_a_run_the_store_does_not_have_starts_a_new_one(store, capsys):
    with StageRun("train@unknown", store, ["run"], {}, resume="0" * 32) as run:
        pass
    assert run.run_id != "0" * 32 and _client().get_run(run.run_id).info.status == "FINISHED"
    assert "is not in this store" in capsys.readouterr().out


def test_a_run_another_live_process_trains_is_not_resumed_twice(store):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with StageRun("train@twice", store, ["run"], {}) as run:
            pass
        _client().update_run(run.run_id, status="RUNNING")
        _client().set_tag(run.run_id, "genzoo.pid", str(alive.pid))
        _client().set_tag(run.run_id, "genzoo.process_start", process_start(alive.pid))
        with pytest.raises(GenzooError, match=f"being trained right now by process {alive.pid}"):
            with StageRun("train@twice", store, ["run"], {}, resume=run.run_id):
                pass
    finally:
        alive.kill()
        alive.wait()


def test_every_metrics_file_names_its_commit_tree_command_and_hardware(tiny_params, tmp_path):
    """Provenance (issue 31): which commit, whether the tree was clean, the command as typed, the machine."""
    from genzoo.engine.tracking import command_line, hardware, provenance

    made = provenance("train@vae", tiny_params, "cpu (2 cores)", tmp_path)
    assert made["commit"] != "unknown" and isinstance(made["dirty"], bool)  # this checkout is a git repository
    assert made["hardware"] == hardware("cpu") and made["hardware"].endswith(" cores")
    assert made["command"] == command_line()
    assert command_line(["/venv/bin/genzoo", "train", "vae"]) == "genzoo train vae"
    assert command_line(["/repo/src/genzoo/__main__.py", "evaluate", "--only", "a b"]) == "genzoo evaluate --only 'a b'"
    assert command_line(["pipeline/gpu_models.py", "vae"]) == "pipeline/gpu_models.py vae"


def test_stages_that_start_together_on_a_new_store_all_open_their_runs(tmp_path):
    """`make run` starts two stages at once: on a new SQLite store both would run MLflow's schema migrations, and
    one failed (`table _alembic_tmp_experiments already exists`) until the store's lock (store_lock)."""
    database = tmp_path / "new" / "mlflow.db"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from genzoo.engine.tracking import StageRun
        from genzoo.models.registry import load_params
        params = load_params(Path({str(ROOT / "params.yaml")!r}))
        while not Path({str(go)!r}).exists():  # every process imported, then all open the store at once
            time.sleep(0.01)
        with StageRun("together@" + str(os.getpid()), params, ["run"], {{}}) as run:
            run.log_metrics(0, {{"x": 1.0}})
    """)
    env = {**os.environ, "GENZOO_MLFLOW": "on", "MLFLOW_TRACKING_URI": f"sqlite:///{database}"}
    env.pop("DVC_EXP_NAME", None)
    stages = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    time.sleep(8)  # past the imports
    go.touch()
    outs = [stage.communicate(timeout=600)[0] for stage in stages]
    assert [stage.returncode for stage in stages] == [0, 0, 0], "\n".join(outs)[-3000:]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 3
