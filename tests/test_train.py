"""The train stage (`genzoo train`, genzoo.stages.train) as a user runs it: killed outright (SIGKILL), it resumes
from its last checkpoint when run again; a side run keeps its checkpoints beside its own models. What a team hits:
stopped and killed runs as one MLflow run with an honest status; two trainings at once sharing the cores; a disk
that fills during a checkpoint; two `dvc repro` in one workspace."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, composed

from genzoo.engine.errors import Interrupted
from genzoo.engine.processes import RUNTIME_ENV, process_start, usable_cores
from genzoo.models.registry import load_model, load_params

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


def test_a_models_cpu_precision_enters_the_fingerprint_resolved(tiny_params):
    """A checkpoint of another CPU precision is never resumed. At fp32 (the default: the section follows the engine)
    the key is the one it was before model sections had the setting, so earlier fp32 checkpoints still resume."""
    import dataclasses
    import hashlib

    from genzoo.stages.train import fingerprint

    config, engine = tiny_params.model("vae"), tiny_params.engine
    assert (config.cpu_precision, engine.cpu_precision) == ("engine", "fp32")
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "cpu_precision"}
    old = {"model": "vae", "config": settings, "data": "h", "seed": tiny_params.run.seed, "precision": engine.precision}
    before = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    own = {p: dataclasses.replace(config, cpu_precision=p) for p in ("fp32", "bf16")}
    assert fingerprint("vae", config, tiny_params, "h") == before
    assert fingerprint("vae", own["fp32"], tiny_params, "h") == before
    bf16 = fingerprint("vae", own["bf16"], tiny_params, "h")
    assert bf16 != before
    engine_bf16 = dataclasses.replace(tiny_params, engine=dataclasses.replace(engine, cpu_precision="bf16"))
    assert fingerprint("vae", config, engine_bf16, "h") == bf16  # the same precision, reached through the engine
    assert fingerprint("vae", own["fp32"], engine_bf16, "h") == before


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


# ---- MLflow: a stopped, killed and resumed stage is one run ----------------------------------------------------

def _mlflow_runs(db: Path, stage: str) -> list[dict]:
    """Runs of one stage in the store: id, status, tags, and each metric's (step, value) list."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        ids = con.execute("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                          "WHERE t.key = 'stage' AND t.value = ?", (stage,)).fetchall()
        runs = []
        for run_id, status in ids:
            tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())
            metrics: dict[str, list] = {}
            for key, step, value in con.execute("SELECT key, step, value FROM metrics WHERE run_uuid = ? "
                                                "ORDER BY step", (run_id,)):
                metrics.setdefault(key, []).append((step, value))
            runs.append({"id": run_id, "status": status, "tags": tags, "metrics": metrics})
    return runs


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True, mmap=True)["step"]) if path.exists() else 0
    except Exception:  # being replaced right now
        return 0


def _wait_for(condition, process: subprocess.Popen, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"{what} did not happen (exit {process.returncode}):\n{(out or '')[-1500:]}\n"
                        f"{(err or '')[-1500:]}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_stopped_killed_and_resumed_stage_is_one_mlflow_run(tmp_path, tiny_processed):
    """SIGTERM: the run is KILLED (the stage saved a checkpoint and exits 143); resumed, the same run is RUNNING
    again; SIGKILL: it stays RUNNING (nothing could mark it); resumed again, it ends FINISHED, with every logged step
    exactly once (one curve) and the DVC experiment's name as a tag. A real SQLite store in tmp_path."""
    db = tmp_path / "mlflow.db"
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=30", "engine.checkpoint_every=10")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "GENZOO_MLFLOW": "on", "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "OMP_NUM_THREADS": "1",
           "DVC_EXP_NAME": "brave-newt", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src")}
    command = [*GENZOO, "train", "vae", "--data", str(tiny_processed)]
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    first = start()
    _wait_for(lambda: _checkpoint_step(checkpoint) >= 10, first, "a first checkpoint")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == Interrupted.exit_code == 143, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if "stopped by SIGTERM" in line]
    (run,) = _mlflow_runs(db, "train@vae")
    assert run["status"] == "KILLED"
    stopped_at = _checkpoint_step(checkpoint)

    second = start()
    _wait_for(lambda: _checkpoint_step(checkpoint) > stopped_at, second, "a checkpoint after the resume")
    second.kill()
    second.communicate()
    (run,) = _mlflow_runs(db, "train@vae")
    assert run["status"] == "RUNNING"  # SIGKILL: nothing could say otherwise

    third = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "continuing MLflow run" in third.stdout
    (run,) = _mlflow_runs(db, "train@vae")
    assert run["status"] == "FINISHED"
    assert run["tags"]["dvc_experiment"] == "brave-newt" and run["tags"]["genzoo.resumed"] == "2"
    steps = [step for step, _ in run["metrics"]["train/loss"]]
    assert steps == list(range(5, 211, 5))  # tiny profile: a row every 5 steps; 30 epochs of 7 steps
    assert [step for step, _ in run["metrics"]["val/elbo"]] == [*range(20, 201, 20), 210]
    summary = json.loads((tmp_path / "metrics" / "vae.json").read_text())
    assert summary["resumed_from"] > stopped_at and not checkpoint.exists()


# ---- two trainings at once share the cores ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores to share")
def test_two_trainings_at_once_each_take_their_share_of_the_cores(tmp_path, tiny_processed):
    """A long training starts alone (2 threads of 2); a second one starts while it runs and takes 1 thread from its
    first step; the long one shrinks to 1 at its next check while a second trainer is registered, and takes 2 again
    once it is gone. The second trainer the long one must see is held by this test (a pid file of its own live
    process), so how fast the machine trains cannot decide the outcome."""
    env = {**os.environ, "GENZOO_MLFLOW": "off", "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", RUNTIME_ENV: str(tmp_path / "runtime")}
    folders = {}
    for name, epochs in (("long", 5000), ("short", 5)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        raw = composed(folders[name], "profile=tiny", "engine.device=cpu", f"vae.epochs={epochs}")
        (folders[name] / "params.yaml").write_text(yaml.safe_dump(raw))
    command = [*GENZOO, "train", "vae", "--data", str(tiny_processed)]
    log = (tmp_path / "long.log").open("w")
    long = subprocess.Popen(command, cwd=folders["long"], env=env, stdout=log, stderr=subprocess.DEVNULL, text=True)

    def logged() -> list[str]:
        return [line for line in (tmp_path / "long.log").read_text().splitlines() if line.startswith("threads:")]

    try:
        _wait_for(lambda: logged(), long, "the long training's start")
        assert logged()[0].startswith("threads: 2 (2 cores shared by 1 ")  # alone at its start
        short = subprocess.run(command, cwd=folders["short"], env=env, capture_output=True, text=True, timeout=600)
        assert short.returncode == 0, short.stderr[-2000:]
        assert "threads: 1 (2 cores shared by 2 genzoo training processes; engine.threads: auto)" in short.stdout
        summary = json.loads((folders["short"] / "metrics" / "vae.json").read_text())
        assert summary["provenance"]["threads"] == [[0, 1]]

        # the short one may have lived long enough for the long one to shrink already: start from it alone again
        _wait_for(lambda: logged()[-1].startswith("threads: 2 "), long, "the long training alone again")
        before = len(logged())
        holder = tmp_path / "runtime" / f"{os.getpid()}.pid"  # a second live trainer, for as long as we need
        holder.write_text(process_start(os.getpid()))
        _wait_for(lambda: len(logged()) > before, long, "the long training shrinking to its share", seconds=120)
        assert logged()[before].startswith("threads: 1 (2 cores shared by 2 ") and ", from step" in logged()[before]
        holder.unlink()
        _wait_for(lambda: len(logged()) > before + 1, long, "the long training growing back", seconds=120)
        assert logged()[before + 1].startswith("threads: 2 (2 cores shared by 1 ")
    finally:
        long.send_signal(signal.SIGTERM)
        long.wait(timeout=120)
        log.close()
    assert long.returncode == 143  # stopped at a checkpoint


# ---- a disk that fills during a checkpoint -------------------------------------------------------------------

def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, tiny_processed):
    """The stage has a checkpoint of step 1; run again with files limited to less than a checkpoint's size
    (RLIMIT_FSIZE: a disk that fills, in any container), its next checkpoint fails: one line naming the file and
    saying the previous version is intact, no traceback, no temp file; the step-1 checkpoint still resumes."""
    from genzoo.stages.train import train_stage

    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=3", "engine.checkpoint_every=10")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"
    params = load_params(tmp_path / "params.yaml", models=["vae", "evaluator"])
    with pytest.raises(Interrupted):  # a passed deadline: a checkpoint after one step, as SIGTERM would
        train_stage("vae", params, tiny_processed, tmp_path / "models", tmp_path / "metrics", stop_at=0.0)
    assert _checkpoint_step(checkpoint) == 1
    previous = checkpoint.read_bytes()
    limit = len(previous) // 2

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "GENZOO_MLFLOW": "off", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT / "src")}
    full = subprocess.run([*GENZOO, "train", "vae", "--data", str(tiny_processed)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: could not write models/.checkpoints/vae.pt: File too large; its previous version is "
                      "intact; free some space and run the same command again"]
    assert checkpoint.read_bytes() == previous
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["vae.pt"]


# ---- two `dvc repro` in one workspace ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_dvc_repro_in_the_same_workspace_gets_the_lock_error(tmp_path, tiny_processed):
    """While one `dvc repro` trains, a second one in the same workspace stops at DVC's lock, and the first one's
    outputs come out whole (the model loads, `dvc status` is clean)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "dvc").exists():
        pytest.skip("dvc is not installed beside this python")
    repo = tmp_path / "repo"
    repo.mkdir()
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=30", "engine.checkpoint_every=10")
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.copytree(tiny_processed, repo / "processed")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": "genzoo train vae --data processed", "deps": ["processed"], "params": ["vae", "engine"],
        "outs": ["models/vae", "metrics/vae.json"]}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "GENZOO_MLFLOW": "off", "OMP_NUM_THREADS": "1",
                "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src"), "DVC_NO_ANALYTICS": "1",
                "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
                "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system")})
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=repo, env=env, check=True, timeout=120)
    first = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    _wait_for(lambda: _checkpoint_step(repo / "models" / ".checkpoints" / "vae.pt") > 0, first, "training")
    second = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    said = second.stdout + second.stderr
    assert second.returncode != 0
    # DVC 3 locks a running stage's outputs (.dvc/tmp/rwlock); older ones took the whole repository's lock
    assert "is busy, it is being blocked by" in said or "Unable to acquire lock" in said, said
    assert "Traceback" not in said
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-2000:]
    assert load_model(repo / "models" / "vae" / "model.pt") is not None
    assert json.loads((repo / "metrics" / "vae.json").read_text())["steps"] == 210
    status = subprocess.run(["dvc", "status"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert "up to date" in status.stdout, status.stdout


# ---- a queue of two experiments sizes its threads ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores to share")
def test_a_queue_of_two_experiments_shares_the_cores(tmp_path, tiny_processed):
    """`dvc queue start -j 2` of two tiny experiments: each queued training registers in the machine's runtime
    folder and sizes its threads to its share, 1 of 2 from its first step. Another trainer (a pid file this test
    holds) is registered throughout, so the verdict does not hang on how well the two happen to overlap."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "dvc").exists():
        pytest.skip("dvc is not installed beside this python")
    repo, runtime = tmp_path / "repo", tmp_path / "runtime"
    repo.mkdir()
    runtime.mkdir()
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.epochs=3")
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.copytree(tiny_processed, repo / "processed")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": "genzoo train vae --data processed", "deps": ["processed"], "params": ["vae", "engine"],
        "outs": ["models/vae"], "metrics": [{"metrics/vae.json": {"cache": False}}]}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "GENZOO_MLFLOW": "off",
                "OMP_NUM_THREADS": "2",  # what a lone training would take: the queue must halve it
                RUNTIME_ENV: str(runtime), "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT / "src"),
                "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
                "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
                "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system"), "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@genzoo.invalid", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@genzoo.invalid"})

    def run(*args: str, timeout: int = 300) -> str:
        done = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return done.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "a one-stage pipeline")
    for lr in ("0.002", "0.003"):
        run("dvc", "exp", "run", "--queue", "-S", f"vae.lr={lr}")
    holder = runtime / f"{os.getpid()}.pid"
    holder.write_text(process_start(os.getpid()))
    try:
        run("dvc", "queue", "start", "-j", "2")
        deadline = time.monotonic() + 600
        while True:
            status = run("dvc", "queue", "status")
            if "Success" in status and not re.search(r"\b(Queued|Running)\b", status):
                break
            assert "Failed" not in status and time.monotonic() < deadline, status
            time.sleep(2)
    finally:
        holder.unlink()
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True, timeout=120)
    refs = run("git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    summaries = [json.loads(run("git", "show", f"{ref}:metrics/vae.json")) for ref in refs]
    assert sorted(s["provenance"]["dvc_experiment"] != "" for s in summaries) == [True, True]
    assert [s["provenance"]["threads"] for s in summaries] == [[[0, 1]], [[0, 1]]]
