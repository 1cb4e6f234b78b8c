"""`genzoo repro --jobs N`: the pipeline's independent stages N at a time, each run by DVC itself.

`dvc repro` runs one stage at a time. DVC documents the way to run independent stages at once (dvc.org,
command-reference/repro, "Parallel stage execution"): one `dvc repro` per stage, as it releases the repository
lock while a stage's command runs. This does exactly that: `dvc --wait-for-lock repro --single-item <stage>` for
each stage whose upstream stages have all finished, at most N at once, the stage with the longest path still
ahead of it first. DVC decides whether a stage changed, runs it and writes dvc.lock, as `dvc repro` would.

Why: on a 2-core host a second torch thread speeds a training step only ~1.3x, and a stage's start (imports,
DVC's own checks) runs on one core; two stages at one thread each finish sooner than the same two one after the
other at two threads (docs/notes/cpu-timing.md). Every stage gets cores // N threads (OMP_NUM_THREADS, unless
set already), also when it happens to run alone: a stage's numbers depend on its thread count in the last bits
(docs/notes/shared-cores.md), so a count fixed by N, not by what ran beside it, makes a rerun on the same machine
give the same numbers. Each stage's output goes to .dvc/tmp/repro/<stage>.log; the console gets one line as it
starts and one as it ends. Ctrl-C or SIGTERM stops the running stages (each checkpoints, as on its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from genzoo.engine.errors import GenzooError, Interrupted
from genzoo.engine.io import read_json, write_json
from genzoo.engine.processes import usable_cores

LOGS = Path(".dvc/tmp/repro")
EDGE = re.compile(r'^"(?P<up>[^"]+)" -> "(?P<down>[^"]+)";$')
NODE = re.compile(r'^"(?P<name>[^"]+)";$')
POLL_SECONDS = 0.2


def parse_dot(dot: str) -> dict[str, set[str]]:
    """`dvc dag --dot` as {stage: the stages it depends on directly}."""
    graph: dict[str, set[str]] = {}
    for line in dot.splitlines():
        line = line.strip()
        if edge := EDGE.match(line):
            graph.setdefault(edge["up"], set())
            graph.setdefault(edge["down"], set()).add(edge["up"])
        elif node := NODE.match(line):
            graph.setdefault(node["name"], set())
    return graph


def stage_graph(root: Path = Path(".")) -> dict[str, set[str]]:
    try:
        done = subprocess.run(["dvc", "dag", "--dot"], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise GenzooError("`dvc` is not on PATH (make install puts it in .venv/bin)") from None
    if done.returncode != 0:
        raise GenzooError(f"`dvc dag --dot` failed: {done.stderr.strip() or done.stdout.strip()}")
    graph = parse_dot(done.stdout)
    if not graph:
        raise GenzooError("`dvc dag --dot` listed no stages (is this the repository root?)")
    return graph


def upstream_closure(graph: dict[str, set[str]], targets: list[str]) -> dict[str, set[str]]:
    """The part of `graph` that `dvc repro <targets>` would run: the targets and everything they depend on."""
    unknown = [t for t in targets if t not in graph]
    if unknown:
        raise GenzooError(f"unknown stage(s) {', '.join(unknown)}; `dvc stage list` names them")
    keep, todo = set(), list(targets)
    while todo:
        stage = todo.pop()
        if stage not in keep:
            keep.add(stage)
            todo.extend(graph[stage])
    return {stage: graph[stage] & keep for stage in graph if stage in keep}


def remaining_path(graph: dict[str, set[str]], seconds: dict[str, float]) -> dict[str, float]:
    """Each stage's own time plus the longest chain of stages downstream of it: what to start first."""
    downstream: dict[str, set[str]] = {stage: set() for stage in graph}
    for stage, ups in graph.items():
        for up in ups:
            downstream[up].add(stage)
    memo: dict[str, float] = {}

    def ahead(stage: str) -> float:
        if stage not in memo:
            memo[stage] = seconds.get(stage, 1.0) + max((ahead(d) for d in downstream[stage]), default=0.0)
        return memo[stage]

    return {stage: ahead(stage) for stage in graph}


@dataclass
class Running:
    stage: str
    process: subprocess.Popen
    log: Path
    started: float


@dataclass
class Schedule:
    """What ran when: seconds from the start (the timing file of pipeline/time_dag.sh)."""
    jobs: int
    stages: dict[str, float] = field(default_factory=dict)
    spans: dict[str, list[float]] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0


def command(stage: str, force: bool) -> list[str]:
    return ["dvc", "--wait-for-lock", "repro", "--single-item", *(["--force"] if force else []), stage]


def run(targets: list[str], jobs: int, force: bool = False, weights: Path | None = None,
        root: Path = Path("."), cores: int | None = None, say=print) -> Schedule:
    """Run the stages of `targets` (all when empty), `jobs` at a time; raise GenzooError naming the first stage
    that failed, after the ones running beside it have ended (finished stages stay finished: run it again)."""
    if jobs < 1:
        raise GenzooError(f"--jobs must be at least 1, got {jobs}")
    graph = stage_graph(root)
    if targets:
        graph = upstream_closure(graph, targets)
    seconds = {}
    if weights is not None and weights.exists():  # a timing file of an earlier run: its stages' seconds
        seconds = {k: float(v) for k, v in read_json(weights).get("stages", {}).items()}
    priority = remaining_path(graph, seconds)
    cores = usable_cores() if cores is None else cores
    logs = root / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    schedule, start = Schedule(jobs=jobs), time.monotonic()
    pending, done, running = set(graph), set(), []
    failed: tuple[str, int, Path] | None = None
    threads = max(1, cores // jobs)  # the same for every stage: see the module's docstring

    def terminated(signum, frame):
        raise Interrupted("genzoo repro stopped by SIGTERM; the stages that finished are kept")

    before = signal.signal(signal.SIGTERM, terminated)
    try:
        while running or (pending and failed is None):
            ready = sorted((s for s in pending if graph[s] <= done), key=lambda s: (-priority[s], s))
            while ready and len(running) < jobs and failed is None:
                stage = ready.pop(0)
                pending.discard(stage)
                running.append(_start(stage, force, threads, logs, root))
                schedule.threads[stage] = threads
                say(f"{time.monotonic() - start:7.1f} s  start {stage} ({threads} thread{'s' * (threads > 1)})")
            time.sleep(POLL_SECONDS)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                now = time.monotonic()
                schedule.stages[job.stage] = round(now - job.started, 1)
                schedule.spans[job.stage] = [round(job.started - start, 1), round(now - start, 1)]
                if job.process.returncode == 0:
                    done.add(job.stage)
                    say(f"{now - start:7.1f} s  done  {job.stage} ({now - job.started:.1f} s)")
                else:
                    failed = failed or (job.stage, job.process.returncode, job.log)
                    say(f"{now - start:7.1f} s  FAILED {job.stage} (exit {job.process.returncode}; log {job.log})")
    except (KeyboardInterrupt, Interrupted) as stop:  # each stage is a session of its own: pass the signal on
        for job in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.process.pid, signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM)
        for job in running:
            job.process.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
    schedule.total_seconds = round(time.monotonic() - start, 1)
    if failed is not None:
        stage, code, log = failed
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise GenzooError(f"stage {stage} failed (exit {code}); the stages that finished are kept, so the same "
                          f"command continues from there. The end of its log ({log}):\n{tail}")
    return schedule


def _start(stage: str, force: bool, threads: int, logs: Path, root: Path) -> Running:
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    log = logs / f"{stage}.log"
    with open(log, "w") as out:  # the child keeps its own copy of the file descriptor
        process = subprocess.Popen(command(stage, force), cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # its tree, signalled as one
    return Running(stage, process, log, time.monotonic())


def write_schedule(schedule: Schedule, path: Path) -> Path:
    return write_json(path, dataclasses.asdict(schedule))
