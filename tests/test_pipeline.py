"""End to end: the real DVC pipeline (dvc.yaml + pipeline/conf + the `genzoo` commands) on the `tiny` profile.

One module-scoped fixture copies the pipeline into a fresh git + DVC repository whose conf defaults to the `tiny`
profile and a tiny synthetic IDX dataset (tests/tiny_data.py), and runs `dvc repro` once; the tests then check
what it produced, that it is stable, that `dvc exp run -S` composes params with Hydra and tracks in MLflow, that
outputs round-trip through a DVC remote, and that a bad parameter stops a command with one clear line.
CPU only, no network.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tiny_data import write_tiny_mirror

from genzoo.models.registry import GENERATIVE
from genzoo.stages.train import stage_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running pytest: its dvc and genzoo run the stages
STAGES = ("download", "preprocess", "derive", "strokes", "train_evaluator", "train_perceptual",
          *(stage_name(name) for name in GENERATIVE), "gan_saturation", "gan_toy", "anogan", "triplegan", "compare",
          "evaluate", "report")
START, END = "<!-- genzoo:results:start -->", "<!-- genzoo:results:end -->"
UP_TO_DATE = "Data and pipelines are up to date."


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def ran_stages(output: str) -> list[str]:
    """The stages DVC says it ran, in order ("Running stage 'train@vae':")."""
    return re.findall(r"Running stage '([^']+)'", output)


# A guard against a hung command, not a speed target: the tiny DAG's one `dvc repro` (32 stages, each a
# fresh process importing torch) took 8 to over 10 minutes on 2-core CI-like hosts.
HANG_GUARD_S = 1800


@dataclass
class Pipeline:
    base: Path  # holds repo/, mirror/, mlflow.db, remote/ and scratch folders
    repo: Path
    env: dict[str, str]
    db: Path
    repro: subprocess.CompletedProcess | None = None  # the fixture's one `dvc repro`

    def run(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in the repo (or `cwd`); with `check`, a non-zero exit fails with its output's tail."""
        result = subprocess.run(list(args), cwd=cwd or self.repo, env=self.env, capture_output=True, text=True,
                                timeout=HANG_GUARD_S)
        if check and result.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited with {result.returncode}\n--- stdout (tail) ---\n"
                                 f"{_tail(result.stdout)}\n--- stderr (tail) ---\n{_tail(result.stderr)}")
        return result

    def runs(self, stage: str) -> dict[str, dict[str, str]]:
        """MLflow runs of one stage in experiment `genzoo`: run id -> {status, flattened params}."""
        if not self.db.exists():
            return {}
        with sqlite3.connect(self.db) as con:
            rows = con.execute(
                "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                "JOIN tags t ON t.run_uuid = r.run_uuid WHERE e.name = 'genzoo' AND t.key = 'stage' AND t.value = ?",
                (stage,)).fetchall()
            out = {}
            for run_id, status in rows:
                params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall())
                out[run_id] = {"status": status, **params}
        return out


def _substitute(text: str, pattern: str, replacement: str, where: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count == 1, f"{where}: expected exactly one match of {pattern!r}, found {count}; update this fixture"
    return new


def _env(base: Path, mirror: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}  # no outer run's state
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "GENZOO_DATA_MIRROR": str(mirror),
        "MLFLOW_TRACKING_URI": f"sqlite:///{(base / 'mlflow.db').resolve()}",
        "GENZOO_MLFLOW": "on",  # conftest turns it off for the unit tests
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(base / "dvc-site"),  # not the machine-wide /var/tmp/dvc
        "DVC_GLOBAL_CONFIG_DIR": str(base / "dvc-global"),  # no user remotes or settings leak in
        "DVC_SYSTEM_CONFIG_DIR": str(base / "dvc-system"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,  # no signing hooks, templates or default branches from the user
        "CUDA_VISIBLE_DEVICES": "",  # CPU only, whatever the machine (engine.device: auto)
        "TQDM_DISABLE": "1",
        "GENZOO_TRACE_IMPORTS": str(base / "imports"),  # each command lists the genzoo files it ran
    })
    return env


def make_tiny_repo(base: Path, dataset: str = "tiny", mirror: Path | None = None) -> Pipeline:
    """A fresh git + DVC repository of the pipeline in base/repo, committed: conf defaults to the `tiny` profile and
    data set `dataset`, found in `mirror` (default: the tiny bars, tests/tiny_data.py), the README's results section
    empty. Also used by tests/test_second_dataset.py."""
    for tool in ("dvc", "genzoo"):
        assert (BIN / tool).exists(), f"{BIN / tool} not found: run pytest with the venv's python (make test)"
    repo = base / "repo"
    repo.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("dvc.yaml", "README.md", ".dvcignore", ".gitignore"):  # .gitignore keeps mlruns/ out of git
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, repo / name)
    for folder in ("pipeline", "src", "metrics/gpu"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=skip)

    # The README's results section starts empty, so the report stage must be what fills it.
    readme = (repo / "README.md").read_text()
    assert START in readme and END in readme, "README.md lost its results markers"
    before, rest = readme.split(START, 1)
    (repo / "README.md").write_text(f"{before}{START}\n{END}{rest.split(END, 1)[1]}")

    # Default to the tiny profile (it keeps 50 images for validation) and the tiny dataset (300 training images).
    conf = repo / "pipeline" / "conf" / "config.yaml"
    text = conf.read_text()
    text = _substitute(text, r"^(\s*-\s*profile:\s*)cpu\b", r"\g<1>tiny", str(conf))
    text = _substitute(text, r"^(\s*dataset:\s*)mnist\b", rf"\g<1>{dataset}", str(conf))
    conf.write_text(text)

    mirror = mirror or write_tiny_mirror(base / "mirror", name="tiny", n_train=300, n_test=100)
    env = _env(base, mirror)
    pipe = Pipeline(base=base, repo=repo, env=env, db=base / "mlflow.db")
    pipe.run(str(BIN / "python"), "pipeline/compose.py")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert (params["run"]["profile"], params["data"]["dataset"]) == ("tiny", dataset), params

    pipe.run("git", "init", "-q")
    pipe.run("git", "config", "user.name", "genzoo tests")
    pipe.run("git", "config", "user.email", "tests@genzoo.invalid")
    pipe.run("git", "config", "commit.gpgsign", "false")
    pipe.run("dvc", "init", "-q")
    pipe.run("dvc", "config", "hydra.enabled", "true")
    pipe.run("dvc", "config", "hydra.config_dir", "pipeline/conf")
    pipe.run("git", "add", "-A")
    pipe.run("git", "commit", "-q", "-m", "tiny pipeline")
    return pipe


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    pipe = make_tiny_repo(tmp_path_factory.mktemp("pipeline"))
    pipe.repro = pipe.run("dvc", "repro")
    return pipe


def test_repro_produces_every_output(pipeline):
    repo = pipeline.repo
    out = pipeline.repro.stdout
    assert sorted(ran_stages(out)) == sorted(STAGES), f"stages run: {ran_stages(out)}\n{_tail(out)}"
    for path in ("models/evaluator/model.pt", "models/perceptual/model.pt", "models/vae/model.pt",
                 "metrics/evaluator.json", "metrics/perceptual.json", "metrics/vae.json",
                 "metrics/evaluate.json", "metrics/plots/vae_train.csv", "metrics/figures/vae/samples.png",
                 "docs/results.md", "metrics/report.html"):
        assert (repo / path).is_file() and (repo / path).stat().st_size > 0, f"{path} missing or empty"

    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    for name in GENERATIVE:  # every registered model trained, pictured and measured by the whole suite
        for path in (f"models/{name}/model.pt", f"metrics/{name}.json"):
            assert (repo / path).is_file(), f"{path} missing"
        scores = evaluate["models"][name]
        if not GENERATIVE[name].samples:
            continue
        assert list((repo / f"metrics/figures/{name}").glob("*.png")), f"{name}: no pictures"
        assert all(math.isfinite(scores[k]) for k in ("fd", "kid", "precision", "recall", "parzen_ll")), scores
    assert (repo / "metrics/plots/gan_saturation.csv").is_file()
    vae = evaluate["models"]["vae"]
    assert math.isfinite(vae["test_nll"]) and vae["test_nll"] > 0, f"vae test_nll = {vae['test_nll']!r}"
    assert isinstance(vae["classes_hit"], int) and not isinstance(vae["classes_hit"], bool), vae["classes_hit"]
    assert evaluate["provenance"]["profile"] == "tiny" and evaluate["provenance"]["dataset"] == "tiny"
    compare = json.loads((repo / "metrics/compare.json").read_text())  # scored once, there: nothing twice
    assert {evaluate["models"][name]["scores_from"] for name in compare["runs"]} == {"compare.json"}
    assert compare["runs"]["vae"]["s0"]["test_nll"] == vae["test_nll"]

    header = (repo / "metrics/plots/vae_train.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step", f"vae_train.csv header: {header}"
    assert (repo / "metrics/figures/vae/samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = (repo / "docs/results.md").read_text()
    readme = (repo / "README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0]
    assert section.strip(), "README results section is still empty after the report stage"
    assert "docs/results.md" in section and "## Summary" in results
    assert "<html" in (repo / "metrics/report.html").read_text().lower()

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES), f"dvc.lock stages: {sorted(lock['stages'])}"


def test_each_stage_ran_only_code_it_depends_on(pipeline):
    """The runtime twin of tests/test_dag.py: every genzoo file a stage's process imported is one of its deps in
    dvc.yaml, so editing it reruns the stage."""
    from test_dag import resolved_stages

    deps = {name: d for name, (_, d) in resolved_stages(pipeline.repo).items()}
    traces = [json.loads(p.read_text()) for p in (pipeline.base / "imports").glob("*.json")]
    seen = set()
    for trace in traces:
        argv = [a for a in trace["argv"] if not a.startswith("-")]
        stage = stage_name(argv[1]) if argv[0] == "train" else argv[0]
        if stage not in deps:
            continue  # a command the tests ran outside the pipeline
        seen.add(stage)
        missing = sorted(set(trace["files"]) - deps[stage])
        assert not missing, f"{stage} ran {missing}, which dvc.yaml does not list as its deps"
    assert seen >= set(STAGES), f"no import trace from {sorted(set(STAGES) - seen)}"


def test_second_repro_changes_nothing(pipeline):
    again = pipeline.run("dvc", "repro")
    assert not ran_stages(again.stdout), f"a second repro re-ran {ran_stages(again.stdout)}"
    assert UP_TO_DATE in again.stdout, _tail(again.stdout)
    status = pipeline.run("dvc", "status")
    assert UP_TO_DATE in status.stdout, f"dvc status is not clean:\n{status.stdout}"


def test_dag_draws_every_stage(pipeline):
    dag = pipeline.run("dvc", "dag").stdout
    for stage in STAGES:
        assert stage in dag, f"{stage} missing from `dvc dag`:\n{dag}"


def test_experiment_composes_params_and_tracks_a_new_run(pipeline):
    repo = pipeline.repo
    cvae_runs, evaluator_runs = pipeline.runs("train@cvae"), pipeline.runs("train_evaluator")
    assert len(cvae_runs) >= 1 and len(evaluator_runs) >= 1, "the repro left no MLflow runs"
    params_before = yaml.safe_load((repo / "params.yaml").read_text())
    assert params_before["cvae"]["lr"] != pytest.approx(0.002), "the experiment must change cvae.lr"

    exp = pipeline.run("dvc", "exp", "run", "-S", "cvae.lr=0.002")
    ran = ran_stages(exp.stdout)
    # exactly the stages that read the `cvae` section (its train stage, and evaluate, which loads every model with
    # its params), and the report after them; the `vae` section would add AnoGAN and compare, which read it too
    assert sorted(ran) == ["evaluate", "report", "train@cvae"], \
        f"exp run ran {ran}\n{_tail(exp.stdout)}"

    # Hydra recomposed params.yaml from the repo's conf: only cvae.lr differs.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["cvae"]["lr"] == pytest.approx(0.002)
    params_before["cvae"]["lr"] = params["cvae"]["lr"]
    assert params == params_before, "dvc exp run -S changed more than cvae.lr"

    name = re.search(r"Reproducing experiment '([^']+)'", exp.stdout)
    assert name, f"no experiment name in the exp run output:\n{_tail(exp.stdout)}"
    listed = pipeline.run("dvc", "exp", "show", "--json").stdout
    assert name[1] in listed, f"experiment {name[1]} missing from `dvc exp show --json`"
    assert json.loads((repo / "metrics/cvae.json").read_text())["provenance"]["dvc_experiment"] == name[1]

    new = {k: v for k, v in pipeline.runs("train@cvae").items() if k not in cvae_runs}
    assert len(new) == 1, f"expected one new MLflow run of train@cvae, got {len(new)}"
    (run,) = new.values()
    assert run["cvae.lr"] == "0.002" and run["status"] == "FINISHED", run
    assert pipeline.runs("train_evaluator").keys() == evaluator_runs.keys(), "train_evaluator ran again"


def test_outputs_round_trip_through_a_remote(pipeline):
    repo = pipeline.repo
    pipeline.run("dvc", "remote", "add", "-d", "local", str(pipeline.base / "remote"))
    pipeline.run("dvc", "push")
    weights = (repo / "models/vae/model.pt").read_bytes()
    shutil.rmtree(repo / "models" / "vae")
    shutil.rmtree(repo / ".dvc" / "cache")
    pipeline.run("dvc", "pull")
    assert (repo / "models/vae/model.pt").read_bytes() == weights, "pulled weights differ from the pushed ones"
    status = pipeline.run("dvc", "status")
    assert UP_TO_DATE in status.stdout, f"dvc status after pull:\n{status.stdout}"


def test_bad_param_stops_with_one_clear_line(pipeline):
    scratch = pipeline.base / "bad-params"
    scratch.mkdir()
    params = yaml.safe_load((pipeline.repo / "params.yaml").read_text())
    params["vae"]["lr_typo"] = 1
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    runs = pipeline.runs("train@vae")

    result = pipeline.run("genzoo", "train", "vae", cwd=scratch, check=False)
    assert result.returncode != 0, f"genzoo train accepted vae.lr_typo:\n{_tail(result.stdout)}"
    assert "Traceback" not in result.stderr, _tail(result.stderr)
    errors = [line for line in result.stderr.splitlines() if "vae.lr_typo" in line]
    assert len(errors) == 1 and "params.yaml" in errors[0], f"stderr:\n{result.stderr}"
    assert sorted(p.name for p in scratch.iterdir()) == ["params.yaml"], "work started before the check"
    assert pipeline.runs("train@vae").keys() == runs.keys(), "a rejected command opened an MLflow run"


def test_a_distributed_train_stage_is_one_experiment_param(pipeline):
    """`dvc exp run -S engine.processes=2` is all it takes: the stage's `genzoo train` starts two ranks through
    torchrun; rank 0 alone writes the stage's outputs and its one MLflow run."""
    repo = pipeline.repo
    vae_runs = pipeline.runs("train@vae")
    exp = pipeline.run("dvc", "exp", "run", "-S", "engine.processes=2", "train@vae")
    # the engine section is a param of every training stage: train@vae and the evaluator it depends on rerun
    assert ran_stages(exp.stdout) == ["train_evaluator", "train@vae"], _tail(exp.stdout)
    for name in ("evaluator", "vae"):
        summary = json.loads((repo / f"metrics/{name}.json").read_text())
        assert summary["provenance"]["processes"] == 2 and summary["steps"] > 0, name
    new = {k: v for k, v in pipeline.runs("train@vae").items() if k not in vae_runs}
    assert len(new) == 1, f"expected one MLflow run (rank 0's), got {len(new)}"
    (run,) = new.values()
    assert run["engine.processes"] == "2" and run["status"] == "FINISHED", run
