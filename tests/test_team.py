"""A team on one machine: a real MLflow tracking server (PostgreSQL backend store, S3 artifact store), a DVC remote
on S3, a git remote, and teammates' clones of the tiny pipeline (DESIGN.md §10; README "Team and cluster").

The module fixture starts its own servers on free localhost ports and stops them at the end, also on failure: a
PostgreSQL cluster in a temporary folder (run as the `postgres` user when the tests run as root), moto's S3 server
(two buckets: MLflow's artifacts, DVC's remote) and `mlflow server`. Alice builds the repository (tests/test_pipeline
.py's make_tiny_repo: the `tiny` profile and data set), cuts dvc.yaml down to train@vae and its upstream stages
(download, preprocess, train_evaluator: not the whole DAG), runs `dvc repro`, then pushes git to a bare repository
and the outputs to S3. The tests, in order, work in fresh `git clone`s of that bare repository (bob, carol, dave):
a pull bit for bit, two experiments from two clones side by side on the server, `dvc exp push`/`pull`, and the
run-cache. CPU only; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from test_pipeline import BIN, ROOT, UP_TO_DATE, Pipeline, _tail, make_tiny_repo, ran_stages

pytestmark = pytest.mark.slow

STAGE = "train@vae"
WEIGHTS = "models/vae/model.pt"
MLFLOW_BUCKET, DVC_BUCKET = "genzoo-mlflow", "genzoo-dvc"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
START_S = 240  # a guard for each server's start on a busy 2-core host (mlflow server took ~40 s there), not a target

# DVC 3's `dvc push --run-cache` uploads the run records but none of their outputs, and a `cache: false` output
# (every train stage's metrics, plots and figures) is in no revision `dvc push` uploads: without this, a teammate's
# `dvc repro --pull` finds the record, misses its files and trains again. The README gives this very command.
PUSH_RUN_OUTPUTS = ("from pathlib import Path; from dvc.repo import Repo; r = Repo()\n"
                    "runs = [(p.parent.name, p.name) for p in Path(r.stage_cache.cache_dir).glob('*/*/*')]\n"
                    "for objs in r.stage_cache.get_used_objs(runs).values(): r.cloud.push(objs)")


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent  # through a link in /usr/local/bin, say
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(re.findall(r"/(\d+)/", p)[0]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, process: subprocess.Popen, log: Path, timeout: float = START_S) -> None:
    """Poll `ready()` until it is true; fail after `timeout` s, or at once when `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if ready():
                return
        except (OSError, urllib.error.URLError):  # not listening yet
            pass
        time.sleep(0.5)
    state = f"exited with {process.returncode}" if process.poll() is not None else f"not up after {timeout:.0f} s"
    raise AssertionError(f"{what}: {state}\n--- its log (tail) ---\n{_tail(log.read_text(errors='replace'))}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def start_server(stack: ExitStack, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A server in its own session, stopped at exit with its whole process group (uvicorn's worker too)."""
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop() -> None:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
    stack.callback(stop)
    return process


def start_postgres(stack: ExitStack, bindir: Path) -> str:
    """A throwaway cluster (trust auth, localhost only) with a database `mlflow`; returns its URL."""
    # Not under pytest's tmp_path: its folders are private to this user, and the server may run as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="genzoo-pg-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def pg(*args: str) -> None:
        result = subprocess.run([*as_user, *args], check=False, capture_output=True, text=True, timeout=START_S)
        if result.returncode != 0:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            raise AssertionError(f"`{' '.join(args)}` exited with {result.returncode}\n{result.stdout}\n"
                                 f"{result.stderr}\n--- server log (tail) ---\n{_tail(log)}")

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", str(START_S), "-o",
       f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off", "start")
    stack.callback(subprocess.run, [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                    "-t", "60", "stop"], capture_output=True, timeout=90)
    import psycopg  # SQLAlchemy's default PostgreSQL driver: the one `mlflow server` loads for postgresql://

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as con:
        con.execute("CREATE DATABASE mlflow")
    return f"postgresql://postgres@127.0.0.1:{port}/mlflow"


@dataclass
class Team:
    base: Path
    env: dict[str, str]  # every clone's, but LOGNAME: the teammate's name (MLflow's `mlflow.user` tag)
    origin: Path  # the bare git repository
    tracking_uri: str
    database: str
    s3_url: str
    clones: dict[str, Pipeline] = field(default_factory=dict)
    weights: dict[str, bytes] = field(default_factory=dict)  # an experiment's name -> its models/vae/model.pt

    def clone(self, who: str) -> Pipeline:
        """`git clone` of the bare repository (no data, no DVC cache), once per teammate."""
        if who not in self.clones:
            repo = self.base / who
            subprocess.run(["git", "clone", "-q", str(self.origin), str(repo)], env=self.env, check=True,
                           capture_output=True, timeout=120)
            self.clones[who] = Pipeline(base=self.base, repo=repo, env={**self.env, "LOGNAME": who},
                                        db=self.base / "unused.db")
        return self.clones[who]

    def experiment(self, who: str, name: str, override: str) -> bytes:
        """`dvc exp run -S override -n name` in `who`'s clone (pulled first when new), once: its weights."""
        if name not in self.weights:
            pipe = self.clones.get(who)
            if pipe is None:
                pipe = self.clone(who)
                pipe.run("dvc", "pull")
            exp = pipe.run("dvc", "exp", "run", "-S", override, "-n", name)
            assert ran_stages(exp.stdout) == [STAGE], f"{who}'s exp run ran {ran_stages(exp.stdout)}"
            self.weights[name] = (pipe.repo / WEIGHTS).read_bytes()
        return self.weights[name]

    def api(self, endpoint: str, **query: str) -> dict:
        """GET on the tracking server's REST API (what MlflowClient calls)."""
        url = f"{self.tracking_uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())

    def runs(self, stage: str) -> dict[str, dict]:
        """The server's runs of one stage in experiment `genzoo`: run id -> info fields, params, metrics, tags."""
        experiment = self.api("experiments/get-by-name", experiment_name="genzoo")["experiment"]
        body = json.dumps({"experiment_ids": [experiment["experiment_id"]], "max_results": 1000,
                           "filter": f"tags.stage = '{stage}'"}).encode()
        request = urllib.request.Request(f"{self.tracking_uri}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            found = json.loads(response.read()).get("runs", [])
        runs = {}
        for run in found:
            pairs = {kind: {kv["key"]: kv["value"] for kv in run["data"].get(kind, [])}
                     for kind in ("params", "metrics", "tags")}
            runs[run["info"]["run_id"]] = {**run["info"], **pairs}
        return runs

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_url, region_name=AWS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
    assert (BIN / "mlflow").exists(), f"{BIN / 'mlflow'} not found: run pytest with the venv's python (make test)"
    base = tmp_path_factory.mktemp("team")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "DVC_"))}
    clean.update(AWS, AWS_CONFIG_FILE=str(base / "aws-config"),  # no profile, endpoint or key of the user's leaks in
                 AWS_SHARED_CREDENTIALS_FILE=str(base / "aws-credentials"))
    with ExitStack() as stack:
        s3_url = f"http://127.0.0.1:{free_port()}"
        moto = start_server(stack, [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                    s3_url.rsplit(":", 1)[1]], base / "s3.log", clean)
        database = start_postgres(stack, bindir)
        tracking_uri = f"http://127.0.0.1:{free_port()}"
        server = start_server(stack, [  # the README's command, on localhost
            str(BIN / "mlflow"), "server", "--backend-store-uri", database,
            "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts",  # clients upload through the server
            "--host", "127.0.0.1", "--port", tracking_uri.rsplit(":", 1)[1], "--workers", "1",
        ], base / "mlflow-server.log", {**clean, "MLFLOW_S3_ENDPOINT_URL": s3_url,
                                        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no job runner processes
        wait_until(lambda: http_ok(f"{s3_url}/moto-api/"), "moto's S3 server", moto, base / "s3.log")

        # Alice's repository, while the tracking server starts.
        alice = make_tiny_repo(base)
        env = {k: v for k, v in alice.env.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        env.update(AWS, AWS_CONFIG_FILE=clean["AWS_CONFIG_FILE"], OMP_NUM_THREADS="1",
                   AWS_SHARED_CREDENTIALS_FILE=clean["AWS_SHARED_CREDENTIALS_FILE"], MLFLOW_TRACKING_URI=tracking_uri)
        alice.env = {**env, "LOGNAME": "alice"}
        team = Team(base=base, env=env, origin=base / "origin.git", tracking_uri=tracking_uri, database=database,
                    s3_url=s3_url, clones={"alice": alice})
        s3 = team.s3()
        for bucket in (MLFLOW_BUCKET, DVC_BUCKET):
            s3.create_bucket(Bucket=bucket)
        dvc_yaml = yaml.safe_load((alice.repo / "dvc.yaml").read_text())
        stages = dvc_yaml["stages"]
        stages["train"]["foreach"] = {"vae": stages["train"]["foreach"]["vae"]}
        dvc_yaml["stages"] = {name: stages[name] for name in ("download", "preprocess", "train_evaluator", "train")}
        (alice.repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
        alice.run("dvc", "remote", "add", "-d", "team", f"s3://{DVC_BUCKET}/cache")  # the README's remote: in
        alice.run("dvc", "remote", "modify", "team", "endpointurl", s3_url)  # .dvc/config, keys in the environment
        alice.run("git", "add", "-A")
        alice.run("git", "commit", "-q", "-m", "train@vae and what it needs, an S3 remote")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(team.origin)], env=env, check=True,
                       capture_output=True, timeout=60)
        alice.run("git", "remote", "add", "origin", str(team.origin))
        first = alice.run("dvc", "repro", "preprocess")  # stages that track nothing, while the server starts

        wait_until(lambda: http_ok(f"{tracking_uri}/health"), "mlflow server", server, base / "mlflow-server.log")
        repro = alice.run("dvc", "repro")
        ran = ran_stages(first.stdout) + ran_stages(repro.stdout)
        assert ran == ["download", "preprocess", "train_evaluator", STAGE], f"alice ran {ran}\n{_tail(repro.stdout)}"
        alice.run("git", "add", "-A")
        alice.run("git", "commit", "-q", "-m", "train the vae")
        alice.run("git", "push", "-q", "origin", "HEAD:main")
        alice.run("dvc", "push")
        yield team


def test_a_fresh_clone_pulls_bit_identical_weights_and_is_up_to_date(team):
    alice, bob = team.clones["alice"], team.clone("bob")
    bob.run("dvc", "pull")
    for path in (WEIGHTS, "models/evaluator/model.pt", "data/processed/meta.json"):
        assert (bob.repo / path).read_bytes() == (alice.repo / path).read_bytes(), f"{path} differs after dvc pull"
    status = bob.run("dvc", "status")  # up to date: `dvc repro` would train nothing
    assert UP_TO_DATE in status.stdout, f"dvc status after pull:\n{status.stdout}"


def test_experiments_from_two_clones_land_side_by_side_on_the_server(team):
    before = team.runs(STAGE)
    assert len(before) == 1, f"alice's repro should have left one {STAGE} run on the server, found {len(before)}"
    with ThreadPoolExecutor(2) as pool:  # at the same time, as teammates would
        jobs = [pool.submit(team.experiment, who, f"{who}-lr", f"vae.lr={lr}")
                for who, lr in (("alice", "0.002"), ("bob", "0.005"))]
        for job in jobs:
            job.result()
    runs = team.runs(STAGE)
    new = {run_id: run for run_id, run in runs.items() if run_id not in before}
    by_user = {run["tags"].get("mlflow.user"): run for run in new.values()}
    assert len(new) == 2, f"{len(new)} new {STAGE} runs on the server, not 2"
    assert sorted(by_user) == ["alice", "bob"], f"new {STAGE} runs by {sorted(by_user)}"  # both in `genzoo`
    experiments = [e["name"] for e in team.api("experiments/search", max_results="100")["experiments"]]
    assert sorted(experiments) == ["Default", "genzoo"], f"experiments on the server: {experiments}"

    s3 = team.s3()
    objects = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=MLFLOW_BUCKET)
               for o in page.get("Contents", [])}
    for who, lr in (("alice", "0.002"), ("bob", "0.005")):
        run, repo = by_user[who], team.clones[who].repo
        provenance = json.loads((repo / "metrics/vae.json").read_text())["provenance"]
        assert run["status"] == "FINISHED", run
        assert run["params"]["vae.lr"] == lr and run["params"]["run.profile"] == "tiny", run["params"]
        assert any(k.startswith("test/") for k in run["metrics"]), sorted(run["metrics"])
        curve = next((k for k in run["metrics"] if k.startswith("train/")), None)
        history = team.api("metrics/get-history", run_id=run["run_id"], metric_key=curve)["metrics"] if curve else []
        assert len(history) > 1, f"no training curve on the server: {sorted(run['metrics'])}"
        tags = run["tags"]
        head = team.clones[who].run("git", "rev-parse", "HEAD").stdout.strip()
        assert tags["commit"] == head == provenance["commit"], (tags, head)
        assert tags["data_hash"] == provenance["data_hash"] != "unknown", tags
        assert tags["profile"] == "tiny" and tags["device"] == provenance["device"], tags
        assert tags.get("dvc_experiment") == f"{who}-lr", tags
        # artifacts: listed by the server, stored in its S3 bucket, the clone's very weights
        listed = team.api("artifacts/list", run_id=run["run_id"], path="model").get("files", [])
        assert [f["path"] for f in listed] == ["model/model.pt"], listed
        figures = team.api("artifacts/list", run_id=run["run_id"], path="figures").get("files", [])
        assert any(f["path"].endswith(".png") for f in figures), figures
        key = next((k for k in objects if k.endswith(f"/{run['run_id']}/artifacts/model/model.pt")), None)
        assert key, f"{who}'s weights are not in s3://{MLFLOW_BUCKET}"
        assert s3.get_object(Bucket=MLFLOW_BUCKET, Key=key)["Body"].read() == (repo / WEIGHTS).read_bytes()

    import psycopg  # the server's backend store is this PostgreSQL database

    with psycopg.connect(team.database, connect_timeout=10) as con:
        stored = {row[0] for row in con.execute(
            "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = 'genzoo'")}
    assert set(new) <= stored, "the experiments' runs are not in the PostgreSQL store"


def test_exp_push_and_exp_pull_share_an_experiment(team):
    weights = team.experiment("alice", "alice-lr", "vae.lr=0.002")
    alice, carol = team.clones["alice"], team.clone("carol")
    alice.run("dvc", "exp", "push", "origin", "alice-lr")  # its git ref to origin, its outputs to the data remote
    carol.run("dvc", "exp", "pull", "origin", "alice-lr")
    refs = carol.run("git", "for-each-ref", "refs/exps").stdout
    assert "alice-lr" in refs, f"no experiment ref after dvc exp pull:\n{refs}"
    carol.run("dvc", "exp", "apply", "alice-lr")
    assert yaml.safe_load((carol.repo / "params.yaml").read_text())["vae"]["lr"] == pytest.approx(0.002)
    assert (carol.repo / WEIGHTS).read_bytes() == weights, "exp apply did not restore alice's experiment weights"
    status = carol.run("dvc", "status")
    assert UP_TO_DATE in status.stdout, f"dvc status after exp pull + apply:\n{status.stdout}"


def test_repro_pull_reuses_a_teammates_run_from_the_run_cache(team):
    weights = team.experiment("alice", "alice-lr", "vae.lr=0.002")
    alice = team.clones["alice"]
    alice.run("dvc", "push", "--run-cache")
    alice.run(str(BIN / "python"), "-c", PUSH_RUN_OUTPUTS)
    dave = team.clone("dave")  # a fresh clone: no data, no cache, no run-cache of its own
    dave.run(str(BIN / "python"), "pipeline/compose.py", "vae.lr=0.002")  # the params change alice ran
    runs = team.runs(STAGE)
    repro = dave.run("dvc", "repro", "--pull")
    assert not ran_stages(repro.stdout), f"repro --pull ran {ran_stages(repro.stdout)}:\n{_tail(repro.stdout)}"
    assert f"Stage '{STAGE}' is cached" in repro.stdout, _tail(repro.stdout)
    assert (dave.repo / WEIGHTS).read_bytes() == weights, "the run-cache gave other weights than alice's"
    assert team.runs(STAGE).keys() == runs.keys(), "dave trained instead of reusing alice's run"
    status = dave.run("dvc", "status")
    assert UP_TO_DATE in status.stdout, f"dvc status after repro --pull:\n{status.stdout}"
    assert f'python -c "{PUSH_RUN_OUTPUTS}"' in (ROOT / "README.md").read_text(), "README's command differs"
