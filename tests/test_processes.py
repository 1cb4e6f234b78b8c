"""genzoo.engine.processes: which genzoo trainings are alive on the machine, and the CPU threads each takes
(`engine.threads: auto` divides the cores among them; a lone process keeps the threads it had)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from genzoo.engine import processes
from genzoo.engine.processes import ThreadBudget, live_trainers, process_alive, process_start, share


@pytest.fixture
def threads():
    """Restore the test process's thread count whatever a test sets."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sleeper():
    """A live process that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its pid names no process (until the kernel reuses it)
    return proc.pid


def register(folder, pid: int, start: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.pid").write_text(process_start(pid) if start is None else start)


@pytest.mark.parametrize(("cores", "trainers", "cap", "threads"), [
    (2, 1, 2, 2),  # alone on this 2-core machine: PyTorch's default, unchanged
    (2, 2, 2, 1),  # `dvc queue start -j 2` on 2 cores: one each
    (2, 3, 2, 1),  # more trainings than cores: never fewer than one
    (16, 2, 16, 8),
    (16, 3, 16, 5),
    (16, 2, 8, 4),  # PyTorch took 8 (physical cores) of 16: the share is of those 8
    (16, 1, 4, 4),  # OMP_NUM_THREADS=4 is a ceiling auto never lifts
])
def test_auto_shares_the_cores_among_the_live_trainings(cores, trainers, cap, threads):
    assert share(cores, trainers, cap) == threads


def test_live_trainers_counts_live_processes_and_drops_stale_files(tmp_path, sleeper):
    folder = tmp_path / "runtime"
    register(folder, os.getpid())
    register(folder, sleeper.pid)
    gone = dead_pid()
    register(folder, gone, start="12345")  # SIGKILL left its file behind
    (folder / f"{os.getppid()}.pid").write_text("1")  # a reused pid: alive, but not the process that registered
    (folder / "junk.pid").write_text("?")
    assert live_trainers(folder) == 2
    assert not (folder / f"{gone}.pid").exists() and not (folder / f"{os.getppid()}.pid").exists()
    assert process_alive(os.getpid(), process_start(os.getpid())) and not process_alive(gone)


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while process_alive(proc.pid) and time.monotonic() < deadline:  # exited, not yet reaped: a zombie
        time.sleep(0.05)
    assert not process_alive(proc.pid)
    proc.wait()


def test_the_budget_shrinks_when_a_training_arrives_and_grows_back(tmp_path, monkeypatch, threads, sleeper):
    """A run that started alone takes all its threads; a second training appears, the next check halves them;
    the second one dies (its pid file stays behind), the next check gives them back; leaving restores them."""
    monkeypatch.setattr(processes, "usable_cores", lambda: 4)
    torch.set_num_threads(4)
    folder = tmp_path / "runtime"
    with ThreadBudget("auto", folder, recheck_seconds=0) as budget:
        assert (budget.threads, torch.get_num_threads()) == (4, 4)
        assert (folder / f"{os.getpid()}.pid").exists()
        register(folder, sleeper.pid)
        assert budget.check() == 2 and torch.get_num_threads() == 2
        assert "2 genzoo training processes" in budget.describe()
        assert budget.check() is None  # no change, nothing to report
        sleeper.kill()
        sleeper.wait()
        assert budget.check() == 4 and torch.get_num_threads() == 4
        torch.set_num_threads(3)  # whatever happens inside, leaving restores the count the process had
    assert torch.get_num_threads() == 4 and not (folder / f"{os.getpid()}.pid").exists()


def test_a_started_budget_counts_the_others_at_once(tmp_path, monkeypatch, threads, sleeper):
    monkeypatch.setattr(processes, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    folder = tmp_path / "runtime"
    register(folder, sleeper.pid)
    with ThreadBudget("auto", folder) as budget:
        assert budget.threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_a_fixed_thread_count_is_kept(tmp_path, threads, sleeper):
    register(tmp_path, sleeper.pid)
    with ThreadBudget(3, tmp_path, recheck_seconds=0) as budget:
        assert torch.get_num_threads() == 3 and budget.check() is None
        assert budget.describe() == "threads: 3 (engine.threads)"


def test_an_unwritable_runtime_folder_leaves_a_lone_process_as_it_was(tmp_path, threads):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    before = torch.get_num_threads()
    with ThreadBudget("auto", blocker / "runtime"):
        assert torch.get_num_threads() == min(before, processes.usable_cores())
