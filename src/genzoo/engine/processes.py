"""The genzoo processes alive on this machine, and the CPU threads each training process takes.

PyTorch gives every process as many intra-op threads as the machine has cores, so two trainings on the same
cores (`dvc queue start -j 2`, or any second job) run twice the threads the cores can hold and spend their time
waiting on each other (a cpu-profile VAE fell from ~50 to 2-5 steps/s). So each `fit()` registers itself with a
small pid file in a runtime folder the machine's genzoo processes share, and with `engine.threads: auto` sizes its
threads to its share of the cores: the usable cores (CPU affinity, a cgroup quota), never more than the threads
it started with (OMP_NUM_THREADS or PyTorch's default), divided by the live training processes. It looks again
every few seconds, so a run that started alone shrinks when a second one arrives and grows back when it leaves.
A lone process keeps exactly the threads it had, so its numbers do not change. A pid file whose process is gone
(SIGKILL leaves it behind) is not counted, and is removed.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import torch

RUNTIME_ENV = "GENZOO_RUNTIME_DIR"  # the shared folder (a test gives its processes their own)
RECHECK_SECONDS = 5.0


def runtime_dir() -> Path:
    """Where live training processes register: $GENZOO_RUNTIME_DIR, else <tmp>/genzoo-<uid>/training (the
    same for every genzoo process of this user on this machine, queued DVC experiments included)."""
    folder = os.environ.get(RUNTIME_ENV)
    return Path(folder) if folder else Path(tempfile.gettempdir()) / f"genzoo-{os.getuid()}" / "training"


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat): with the pid it names one process,
    even after the pid is reused. '' where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the fields after the command name start at 3


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process `pid` (started at `start`, when given) still runs; a zombie does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc to ask: the signal test said it exists
    return fields[0] != "Z" and (not start or fields[19] == start)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (docker --cpus)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def share(cores: int, processes: int, cap: int) -> int:
    """`auto`'s thread count: the cores a lone process would use (never more than `cap`, the threads it had)
    divided among the live training processes, at least one."""
    return max(1, min(cores, cap) // max(processes, 1))


def live_trainers(folder: Path | None = None) -> int:
    """Training processes registered in `folder` whose process still runs (stale pid files are removed)."""
    folder = runtime_dir() if folder is None else folder
    live = 0
    try:
        files = list(folder.glob("*.pid"))
    except OSError:
        return 0
    for file in files:
        try:
            pid, start = int(file.stem), file.read_text().strip()
        except (OSError, ValueError):
            continue  # being written, or not ours
        if process_alive(pid, start):
            live += 1
        else:
            file.unlink(missing_ok=True)
    return live


class ThreadBudget:
    """For the length of a `fit()`: this process registered as a live trainer, and its intra-op threads sized by
    `setting` (`auto`, or a fixed count). `check()` re-sizes them (at most every RECHECK_SECONDS) and returns the
    new count when it changed; leaving restores the threads the process had."""

    def __init__(self, setting: int | str = "auto", folder: Path | None = None,
                 recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.setting, self.recheck_seconds = setting, recheck_seconds
        self.folder = runtime_dir() if folder is None else folder
        self.file = self.folder / f"{os.getpid()}.pid"
        self.before = self.threads = torch.get_num_threads()
        self.cores, self.trainers = usable_cores(), 1
        self._next = 0.0

    def __enter__(self) -> "ThreadBudget":
        self.before = torch.get_num_threads()
        try:  # best effort: without the folder, this process sizes its threads as if alone
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{os.getpid()}.tmp"
            tmp.write_text(process_start(os.getpid()))
            os.replace(tmp, self.file)
        except OSError:
            pass
        self._apply(self._size())
        return self

    def _size(self) -> int:
        if self.setting != "auto":
            return int(self.setting)
        self.trainers = max(1, live_trainers(self.folder))
        return share(self.cores, self.trainers, self.before)

    def _apply(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads = threads
        self._next = time.monotonic() + self.recheck_seconds

    def check(self) -> int | None:
        """Called every step (costs a clock read): the new thread count when it changed, else None."""
        if self.setting != "auto" or time.monotonic() < self._next:
            return None
        old = self.threads
        self._apply(self._size())
        return self.threads if self.threads != old else None

    def describe(self) -> str:
        if self.setting != "auto":
            return f"threads: {self.threads} (engine.threads)"
        return (f"threads: {self.threads} ({min(self.cores, self.before)} cores shared by {self.trainers} genzoo "
                f"training process{'es' if self.trainers > 1 else ''}; engine.threads: auto)")

    def __exit__(self, *exc) -> None:
        try:
            self.file.unlink(missing_ok=True)
        except OSError:
            pass
        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)
