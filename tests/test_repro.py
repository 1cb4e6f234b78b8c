"""genzoo.tools.repro: the DAG read from `dvc dag --dot`, the longest path ahead first, and a real DVC project
of shell stages run two at a time: independent stages overlap, a stage waits for its upstream, dvc.lock ends as
after `dvc repro` (status clean, a second run skips every stage), and a failed stage is named with its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from genzoo.engine.errors import GenzooError
from genzoo.engine.processes import process_alive
from genzoo.tools.repro import parse_dot, remaining_path, run, upstream_closure

DOT = """strict digraph {
"download";
"preprocess";
"train@a";
"train@b";
"report";
"download" -> "preprocess";
"preprocess" -> "train@a";
"preprocess" -> "train@b";
"train@a" -> "report";
"train@b" -> "report";
}
"""


def test_the_dag_is_read_from_dvc_dag_dot():
    graph = parse_dot(DOT)
    assert graph == {"download": set(), "preprocess": {"download"}, "train@a": {"preprocess"},
                     "train@b": {"preprocess"}, "report": {"train@a", "train@b"}}
    assert upstream_closure(graph, ["train@a"]) == {"download": set(), "preprocess": {"download"},
                                                    "train@a": {"preprocess"}}
    with pytest.raises(GenzooError, match="unknown stage"):
        upstream_closure(graph, ["train@c"])


def test_the_longest_path_ahead_starts_first():
    graph = parse_dot(DOT)
    ahead = remaining_path(graph, {"train@a": 10.0, "train@b": 50.0, "report": 2.0})
    assert ahead["train@b"] == 52.0 and ahead["train@a"] == 12.0 and ahead["download"] == 1.0 + 1.0 + 52.0


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A DVC project without git: a -> (b, c) -> d, b and c each sleeping 3 s."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "dvc").exists():
        pytest.skip("dvc is not installed beside this python")
    for key in [k for k in os.environ if k.startswith("DVC_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for key, folder in (("DVC_NO_ANALYTICS", None), ("DVC_SITE_CACHE_DIR", "dvc-site"),
                        ("DVC_GLOBAL_CONFIG_DIR", "dvc-global"), ("DVC_SYSTEM_CONFIG_DIR", "dvc-system")):
        monkeypatch.setenv(key, "1" if folder is None else str(tmp_path / folder))
    repo = tmp_path / "repo"
    repo.mkdir()

    def stage(out: str, deps: list[str], seconds: float = 0.0, fail: bool = False) -> dict:
        body = f"sleep {seconds}; " if seconds else ""
        body += "echo boom; exit 3" if fail else f"echo $OMP_NUM_THREADS > {out}"
        return {"cmd": f"sh -c '{body}'", "deps": deps, "outs": [out]}

    (repo / "input.txt").write_text("x\n")
    stages = {"a": stage("a.txt", ["input.txt"]), "b": stage("b.txt", ["a.txt"], 3), "c": stage("c.txt", ["a.txt"], 3),
              "d": stage("d.txt", ["b.txt", "c.txt"])}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=repo, check=True, timeout=120)
    return repo, stages


def _status(repo: Path) -> str:
    return subprocess.run(["dvc", "status"], cwd=repo, capture_output=True, text=True, timeout=120).stdout


def test_independent_stages_run_at_once_and_dvc_lock_ends_as_after_dvc_repro(project):
    repo, _ = project
    said = []
    schedule = run([], jobs=2, root=repo, cores=2, say=said.append)
    assert set(schedule.stages) == {"a", "b", "c", "d"}
    spans = schedule.spans
    assert spans["b"][0] < spans["c"][1] and spans["c"][0] < spans["b"][1]  # b and c overlapped
    assert spans["a"][1] <= min(spans["b"][0], spans["c"][0]) and spans["d"][0] >= max(spans["b"][1], spans["c"][1])
    # every stage its share of the cores, also one that runs alone (a, d): a rerun's numbers do not depend on timing
    assert [(repo / f"{s}.txt").read_text().strip() for s in "abcd"] == ["1", "1", "1", "1"]
    assert schedule.threads == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert "up to date" in _status(repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"a", "b", "c", "d"}
    written = {s: (repo / f"{s}.txt").stat().st_mtime_ns for s in "abcd"}
    run([], jobs=2, root=repo, cores=2, say=said.append)  # nothing changed: DVC skips every stage
    assert {s: (repo / f"{s}.txt").stat().st_mtime_ns for s in "abcd"} == written  # no command ran again
    assert all("didn't change" in (repo / f".dvc/tmp/repro/{s}.log").read_text() for s in "abcd")


def test_a_failed_stage_stops_what_depends_on_it_and_is_named_with_its_log(project):
    repo, stages = project
    stages["c"] = {**stages["c"], "cmd": "sh -c 'sleep 1; echo boom; exit 3'"}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    with pytest.raises(GenzooError, match=r"(?s)stage c failed \(exit \d+\).*boom"):
        run([], jobs=2, root=repo, cores=2, say=lambda line: None)
    assert (repo / "b.txt").exists() and not (repo / "d.txt").exists()  # b, beside c, finished; d never started
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"a", "b"}  # what finished is kept


def test_sigterm_stops_the_running_stages_too(project):
    repo, _ = project
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"long": {
        "cmd": "sh -c 'echo $$ > long.pid; sleep 120; echo done > long.txt'", "deps": ["input.txt"],
        "outs": ["long.txt"]}}}))
    runner = subprocess.Popen([sys.executable, "-m", "genzoo", "repro", "--jobs", "2"], cwd=repo,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (repo / "long.pid").exists() or not (repo / "long.pid").read_text().strip():
        assert runner.poll() is None and time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.2)
    stage_pid = int((repo / "long.pid").read_text())
    runner.send_signal(signal.SIGTERM)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 143 and "stopped by SIGTERM" in out, out
    deadline = time.monotonic() + 30
    while process_alive(stage_pid) and time.monotonic() < deadline:  # the stage's shell went with it
        time.sleep(0.2)
    assert not process_alive(stage_pid) and not (repo / "long.txt").exists()


def test_without_dvc_on_the_path_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GenzooError, match="`dvc` is not on PATH"):
        run([], jobs=2, root=tmp_path)
