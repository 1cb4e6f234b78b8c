"""Data-parallel training (genzoo.engine.distributed) on CPU with gloo: N ranks train as one process would at the
same global batch; a killed two-rank run resumes and ends as an uninterrupted one; bad input is one clear error.

The two-rank runs go through the real launcher (torchrun) and take a few seconds each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, composed

from genzoo.engine import distributed
from genzoo.engine.distributed import SharedRandomness, World
from genzoo.engine.errors import GenzooError

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("dist_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
GENZOO = [sys.executable, "-m", "genzoo"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}", "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1", "GENZOO_MLFLOW": "off"}


# ---- the pieces, in one process --------------------------------------------------------------------------------

def test_each_rank_takes_its_share_of_every_minibatch():
    idx = torch.arange(12)  # one step of 3 minibatches of 4 rows
    ranks = [distributed.shard(idx, 3, World(r, 2)) for r in range(2)]
    assert ranks[0].tolist() == [0, 1, 4, 5, 8, 9] and ranks[1].tolist() == [2, 3, 6, 7, 10, 11]


@pytest.mark.parametrize("draw, minibatches", [
    (lambda rows: torch.randn(rows, 3), 1),
    (lambda rows: torch.rand((rows, 2, 2)), 1),
    (lambda rows: torch.randint(0, 7, (rows,)), 1),
    (lambda rows: torch.randn_like(torch.zeros(rows, 5)), 1),
    (lambda rows: torch.rand_like(torch.zeros(rows, 1)), 2),  # two of the step's minibatches in one draw
], ids=["randn", "rand", "randint", "randn_like", "rand_like_two_minibatches"])
def test_per_example_noise_on_two_ranks_is_one_process_noise(draw, minibatches):
    """A global minibatch of 4 rows: each of 2 ranks draws for its 2 rows what one process draws for them."""
    torch.manual_seed(0)
    alone = draw(4 * minibatches)
    parts = []
    for rank in range(2):
        torch.manual_seed(0)
        with SharedRandomness(rows=2, minibatches=minibatches, world=World(rank, 2)):
            parts.append(draw(2 * minibatches))
    glued = torch.stack([p.view(minibatches, 2, *p.shape[1:]) for p in parts], 1).reshape(alone.shape)
    assert torch.equal(glued, alone)
    assert not torch.equal(parts[0], parts[1])


def test_draws_not_shaped_by_the_batch_are_the_same_on_every_rank():
    draws = []
    for rank in range(2):
        torch.manual_seed(0)
        with SharedRandomness(rows=4, minibatches=1, world=World(rank, 2)):
            draws.append((torch.rand(7), torch.randn(1, 3)))  # not 4 rows: a shared draw, as one process makes it
    torch.manual_seed(0)
    alone = (torch.rand(7), torch.randn(1, 3))
    assert all(torch.equal(a, b) for d in draws for a, b in zip(d, alone))


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(GenzooError, match=r"vae.batch_size = 33 does not split over 2 processes"):
        distributed.check_batch(33, 1, World(0, 2), "vae")
    with pytest.raises(GenzooError, match="does not split"):
        distributed.check_batch(64 * 3, 3, World(0, 3), "gan")  # 64 rows per minibatch, 3 ranks
    distributed.check_batch(64 * 2, 2, World(1, 2), "gan")


def test_a_world_without_a_rendezvous_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GenzooError, match=r"WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set"):
        with distributed.process_group("cpu"):
            pass


def test_a_rendezvous_nobody_answers_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "9")  # discard: nothing serves a rendezvous there
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "3")
    with pytest.raises(GenzooError, match=r"could not join the process group of 2 ranks at 127.0.0.1:9"):
        with distributed.process_group("cpu"):
            pass


def test_one_rank_in_a_group_takes_the_distributed_path_and_trains_as_the_plain_one(tiny_params):
    """What `genzoo bench --distributed-path` times is the real path: in a group of one, DCGAN's BatchNorms
    become GlobalBatchNorm and the hooks run, and it trains as the plain path does."""
    import dataclasses

    from helpers import model_batch, tiny_model

    from genzoo.engine.training import fit

    engine = dataclasses.replace(tiny_params.engine, device="cpu", log_every=1, monitor_samples=0)
    runs = []
    for grouped in (False, True):
        model = tiny_model("dcgan", tiny_params, batch_size=8)
        with distributed.single_rank_group(torch.device("cpu")) if grouped else contextlib.nullcontext():
            result = fit(model, model_batch(model, 32, seed=1), config=model.config, engine=engine, seed=0,
                         stop_after=4, progress=False)
        runs.append((model, _losses(result.history)))
    assert not any(isinstance(m, distributed.GlobalBatchNorm) for m in runs[0][0].modules())
    assert any(isinstance(m, distributed.GlobalBatchNorm) for m in runs[1][0].modules())
    torch.testing.assert_close(runs[1][1], runs[0][1], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(runs[0][0].state_dict().items(), runs[1][0].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)


# ---- equivalence: two ranks at B/2 each against one process at B ----------------------------------------------

@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist")
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(composed(folder, "profile=tiny", "engine.device=cpu")))
    return path


def _fit(params_file: Path, model: str, ranks: int, batch: int, steps: int) -> dict:
    out = params_file.parent / f"{model}_{ranks}.pt"
    launcher = TORCHRUN if ranks == 2 else [sys.executable]
    run = subprocess.run([*launcher, str(WORKER), str(params_file), model, str(out), str(batch), str(steps)],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _losses(history: list[dict]) -> torch.Tensor:
    return torch.tensor([[row[k] for k in sorted(row) if k != "step" and not k.endswith("steps_per_s")]
                         for row in history])


@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_two_ranks_at_half_the_batch_train_as_one_process(params_file, model):
    """The VAE (no BatchNorm) and DCGAN (BatchNorm in both nets, two optimizers, its noise and the VAE's dynamic
    binarization drawn per example): every logged loss agrees within float32 rounding (1e-5: the ranks' matrix
    products are smaller, and sums run in another order), every weight and BatchNorm buffer after 8 steps within
    1e-4 (Adam turns a rounding-sized gradient into a step of up to lr = 1e-3)."""
    one, two = _fit(params_file, model, 1, 16, 8), _fit(params_file, model, 2, 16, 8)
    assert two["world"] == 2 and len(one["history"]) == len(two["history"]) == 8
    torch.testing.assert_close(_losses(two["history"]), _losses(one["history"]), rtol=1e-5, atol=1e-5)
    assert one["state"].keys() == two["state"].keys()
    for name, value in one["state"].items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-4, msg=name)
    first_step = _losses(one["history"])[0]
    assert not torch.allclose(_losses(one["history"])[-1], first_step)  # it trained: the losses moved


# ---- the train stage on two ranks: SIGKILL and resume, a dying rank ---------------------------------------------

def _stage(tmp_path: Path, data: Path, epochs: int = 60):
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", f"vae.epochs={epochs}", "vae.batch_size=32",
                   "engine.checkpoint_every=10", "engine.processes=2")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return [*GENZOO, "train", "vae", "--data", str(data)]


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for_checkpoint(checkpoint: Path, run: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not checkpoint.exists():
        _kill_all(run)
        pytest.fail("no checkpoint appeared: " + run.communicate()[1][-3000:])


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (torchrun starts its ranks in sessions of their own: no process group
    holds them all)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _rank_pid(run: subprocess.Popen, rank: int) -> int:
    """The pid of the worker of `rank` among the run's processes (neither torchrun nor genzoo has RANK)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in _descendants(run.pid):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return pid
        time.sleep(0.1)
    pytest.fail(f"no rank {rank} process found")


def _running(pid: int) -> bool:
    """Alive and not a zombie (a rank orphaned by its launcher is reaped by whoever adopts it, maybe late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_all(run: subprocess.Popen) -> None:
    """SIGKILL to genzoo, torchrun and both ranks at once (a preempted job, the OOM killer)."""
    for pid in [run.pid, *_descendants(run.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_two_rank_training_resumes_and_ends_as_an_uninterrupted_one(tmp_path, tiny_processed):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
    command = _stage(whole, tiny_processed)
    done = subprocess.run(command, cwd=whole, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    _stage(killed, tiny_processed)
    checkpoint = killed / "models" / ".checkpoints" / "vae.pt"
    first = _start(command, killed)
    _wait_for_checkpoint(checkpoint, first)
    _kill_all(first)
    first.wait()
    assert not (killed / "models" / "vae" / "model.pt").exists()
    resumed_at = torch.load(checkpoint, weights_only=True)["step"]

    second = subprocess.run(command, cwd=killed, env=_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {checkpoint.relative_to(killed)} at step {resumed_at}" in second.stdout
    summary = yaml.safe_load((killed / "metrics" / "vae.json").read_text())
    assert summary["resumed_from"] == resumed_at > 0 and summary["provenance"]["processes"] == 2
    a = torch.load(whole / "models" / "vae" / "model.pt", weights_only=True)
    b = torch.load(killed / "models" / "vae" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    assert not checkpoint.exists()


def test_a_rank_that_dies_ends_the_run_with_one_error_and_keeps_the_checkpoint(tmp_path, tiny_processed):
    command = _stage(tmp_path, tiny_processed, epochs=400)
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"
    run = _start(command, tmp_path)
    _wait_for_checkpoint(checkpoint, run)
    os.kill(_rank_pid(run, 1), signal.SIGKILL)
    try:
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            _kill_all(run)
    assert run.returncode == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: the 2 ranks of `genzoo train vae` failed"), stderr[-3000:]
    assert not (tmp_path / "models" / "vae" / "model.pt").exists()
    assert not (tmp_path / "metrics" / "vae.json").exists()
    assert torch.load(checkpoint, weights_only=True)["step"] >= 10  # the last good checkpoint, still whole


def test_the_cli_refuses_a_batch_the_ranks_cannot_split_before_starting_them(tmp_path, tiny_processed):
    raw = composed(tmp_path, "profile=tiny", "engine.device=cpu", "vae.batch_size=33", "engine.processes=2")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    run = subprocess.run([*GENZOO, "train", "vae", "--data", str(tiny_processed)], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == ("error: vae.batch_size = 33 does not split over 2 processes (engine.processes, "
                                  "or torchrun's world size): use a multiple of 2")


def test_ranks_whose_launcher_is_killed_stop_at_a_checkpoint_instead_of_training_on(tmp_path, tiny_processed):
    """torchrun starts each rank in a session of its own; SIGKILL to genzoo and torchrun alone must not leave the
    ranks training as orphans (rank 0 would write a model nobody waits for): they get SIGTERM and stop together."""
    command = _stage(tmp_path, tiny_processed, epochs=400)
    checkpoint = tmp_path / "models" / ".checkpoints" / "vae.pt"
    run = _start(command, tmp_path)
    _wait_for_checkpoint(checkpoint, run)
    ranks = [_rank_pid(run, 0), _rank_pid(run, 1)]
    launchers = [run.pid, *(pid for pid in _descendants(run.pid) if pid not in ranks)]
    for pid in launchers:
        os.kill(pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in ranks if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the ranks trained on after their launcher died"
    assert not (tmp_path / "models" / "vae" / "model.pt").exists()
    assert torch.load(checkpoint, weights_only=True)["step"] < 400 * 7  # stopped at a checkpoint, mid-run
