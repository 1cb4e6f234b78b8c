"""Data-parallel training over torch.distributed: N processes (torchrun's ranks) train one model as one process
would at the same global batch.

What `fit()` takes from here when torchrun started it (WORLD_SIZE > 1), and why:

- **The batch is split, not the recipe.** Each rank takes its `batch_size / N` rows of every minibatch of the
  seeded permutation, on its own device, so N ranks see exactly the rows one process would.
- **Gradients are averaged before every optimizer step.** `average_gradients` all-reduces each optimizer's
  gradients (one flat bucket, sum / N) in a step pre-hook: what DistributedDataParallel's reducer computes. The DDP
  wrapper itself does not fit the zoo: it arms its reducer in a forward through the wrapper, once per backward,
  while a zoo model's `train_step` calls its networks directly, several times per update (a GAN's G in D's step
  and again in its own, D on real and fake before one backward) and steps several optimizers (GANs, CycleGAN,
  StarGAN, Triple-GAN). A step pre-hook is where every one of them agrees. Clipping reads averaged gradients too
  (`genzoo.models.blocks.clip_gradients` averages first).
- **BatchNorm normalizes over the global batch.** On CUDA, `torch.nn.SyncBatchNorm`. Its kernels are GPU-only,
  so on CPU (gloo) `GlobalBatchNorm` does the same with the differentiable `torch.distributed.nn` all-reduce of
  each channel's sum, sum of squares and count.
- **Per-example randomness is drawn as one process would draw it** (`SharedRandomness`): a random tensor with
  one row per example of the rank's minibatch (a VAE's noise, a GAN's z, dynamic binarization) is drawn for the
  whole global minibatch on every rank, from the same seeded stream, and each rank keeps its rows. So the noise,
  like the data, is one process's, and every rank's generator stays in step. Dropout masks and draws not shaped
  by the batch are each rank's own (the same stream on every rank, so the ranks never drift apart).
- **One writer.** Only rank 0 validates, logs, checkpoints and writes; every rank resumes from rank 0's
  checkpoint; the ranks agree at every log step whether to stop (SIGTERM, a deadline), so they stop together.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.overrides import TorchFunctionMode

from genzoo.engine.errors import GenzooError

TIMEOUT_ENV = "GENZOO_DIST_TIMEOUT"  # seconds a rank waits for its peers (rendezvous, collectives); default 600


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    grouped: bool = False  # in a process group: fit() takes the distributed path (even with one rank)

    @property
    def distributed(self) -> bool:
        return self.grouped


def launched() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), grouped=True)
    return World()


@contextlib.contextmanager
def process_group(device_name: str):
    """Joins torchrun's process group for a training (gloo on CPU, NCCL on CUDA; each rank on the GPU of its
    LOCAL_RANK), and leaves it after. In a plain process it does nothing."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise GenzooError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: no rendezvous "
                          f"to join. Launch with `torchrun --nproc_per_node=N -m genzoo train <model>`, or set "
                          f"engine.processes: N and run `genzoo train <model>`")
    _stop_with_the_launcher()
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this rank's GPU
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    except Exception as err:  # a rendezvous that never completes, an address nobody listens on
        raise GenzooError(f"could not join the process group of {os.environ['WORLD_SIZE']} ranks at "
                          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: {err}") from None
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def _stop_with_the_launcher() -> None:
    """Ask Linux for SIGTERM when torchrun dies (PR_SET_PDEATHSIG): torchrun starts each rank in a session of its
    own, so a launcher killed with SIGKILL would leave the ranks training (and rank 0 writing) as orphans. With it,
    they stop together at a checkpoint, as on any SIGTERM. Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def single_rank_group(device: torch.device):
    """A process group of this process alone, so `fit()` takes the distributed path with one rank (its hooks,
    eager steps and shared randomness, collectives over one rank): `genzoo bench --distributed-path` measures
    what that path costs against the plain one at the same batch."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def relaunch(processes: int, argv: list[str]) -> int:
    """Runs `python -m genzoo <argv>` as `processes` ranks on this machine through torchrun (what
    `engine.processes: N` asks for); returns torchrun's exit code."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))  # torchrun would say 1
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "genzoo", *argv]
    return subprocess.run(command, env=env).returncode


def shard(rows: torch.Tensor, minibatches: int, world: World) -> torch.Tensor:
    """This rank's rows of a step's global rows (batch indices, or a draw made for the global batch): its 1/N of
    each of the step's `minibatches` minibatches."""
    return rows.view(minibatches, world.size, -1, *rows.shape[1:])[:, world.rank].reshape(-1, *rows.shape[1:])


def check_batch(batch_size: int, minibatches: int, world: World, label: str) -> None:
    """A step's `batch_size` rows (`minibatches` minibatches) must split evenly over the ranks."""
    if batch_size % (minibatches * world.size):
        raise GenzooError(f"{label or 'model'}.batch_size = {batch_size // max(minibatches, 1)} does not split "
                          f"over {world.size} processes (engine.processes, or torchrun's world size): use a "
                          f"multiple of {world.size}")


def broadcast_state(model: nn.Module) -> None:
    """Every rank starts from rank 0's weights and buffers (they already agree when seeded alike; this makes
    sure)."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, 0)


def _flat_all_reduce_mean(tensors: list[torch.Tensor], size: int) -> None:
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= size
    for t, piece in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(piece.view_as(t))


def average_gradients_of(params, ranks: World | None = None) -> None:
    """Replaces each gradient by its mean over the ranks (a no-op in a plain process). Idempotent: gradients
    already averaged come out the same."""
    ranks = ranks or world()
    if ranks.distributed:
        _flat_all_reduce_mean([p.grad for p in params if p.grad is not None], ranks.size)


def average_gradients(opts: dict[str, torch.optim.Optimizer], world: World) -> list:
    """A step pre-hook on each optimizer that averages its gradients over the ranks; returns the handles."""
    def hook(opt, args, kwargs):
        average_gradients_of([p for group in opt.param_groups for p in group["params"]], world)

    return [opt.register_step_pre_hook(hook) for opt in opts.values()]


def mean_over_ranks(values: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """Each value's mean over the ranks (the logged losses: each rank's are means over its own rows)."""
    if not values:
        return values
    names = sorted(values)
    stacked = torch.stack([values[k].float().reshape(()) for k in names])
    dist.all_reduce(stacked)
    return dict(zip(names, stacked / world.size))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any: the ranks stop at the same step."""
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


# ---- BatchNorm over the global batch ----------------------------------------------------------------------------

class _SumOverRanks(torch.autograd.Function):
    """y = the sum of x over the ranks; its backward sums the ranks' gradients of y, so each rank's x receives
    the gradient of every rank's loss (what torch.distributed.nn's deprecated all_reduce did)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device: the channels' sums,
    sums of squares and the count are summed over the ranks by the differentiable all-reduce, so the backward
    pass carries every rank's share too (torch.nn.SyncBatchNorm's job, which runs only on GPUs). In eval mode it
    is plain BatchNorm on the running statistics (no collective)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)  # eval runs on rank 0 alone: never a collective there
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.full((1,), x.numel() / channels, device=x.device)
        stats = _SumOverRanks.apply(torch.cat([xf.sum(dims), xf.pow(2).sum(dims), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = stats[channels:2 * channels] / n - mean.pow(2)  # biased, as BatchNorm normalizes
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def synchronize_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of `model` normalizes over the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm
    elsewhere (same parameters and buffers, so state dicts and checkpoints are unchanged; out of a process group
    or in eval mode either is plain BatchNorm)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        kind = type(module)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
            module.__class__ = _GLOBAL.setdefault(kind, type("Global" + kind.__name__, (GlobalBatchNorm, kind), {}))
    return model


_GLOBAL: dict[type, type] = {}  # BatchNorm1d -> GlobalBatchNorm1d, ...: one class each (isinstance still holds)


# ---- per-example randomness as one process draws it ---------------------------------------------------------------

_SIZED = {torch.rand, torch.randn}
_LIKE = {torch.rand_like, torch.randn_like}


class SharedRandomness(TorchFunctionMode):
    """Inside a training step: a random tensor with one row per example of the rank's minibatch (its leading
    dimension is the rank's rows b, or m * b for m of the step's minibatches) is drawn for the global minibatch
    and cut to this rank's rows. Covers torch.rand/randn/randint, their _like forms and torch.bernoulli (whose
    probabilities are gathered from every rank first). Other draws pass through unchanged."""

    def __init__(self, rows: int, minibatches: int, world: World):
        super().__init__()
        self.rows, self.minibatches, self.world = rows, minibatches, world

    def _per_example(self, n: int) -> int:
        """How many minibatches a leading dimension n spans (0: not per-example)."""
        m, rest = divmod(n, self.rows)
        return m if rest == 0 and 1 <= m <= self.minibatches else 0

    def _global_shape(self, shape, m: int) -> tuple[int, ...]:
        return (m * self.world.size * self.rows, *shape[1:])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is None and kwargs.get("out") is None:
            drawn = self._draw(func, args, kwargs)
            if drawn is not None:
                return drawn
        return func(*args, **kwargs)

    def _draw(self, func, args, kwargs):
        if func in _SIZED:
            shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
            m = self._per_example(shape[0]) if shape and all(isinstance(s, int) for s in shape) else 0
            return shard(func(self._global_shape(shape, m), **kwargs), m, self.world) if m else None
        if func is torch.randint and "size" not in kwargs and isinstance(args[-1], (tuple, list, torch.Size)):
            shape = tuple(args[-1])
            m = self._per_example(shape[0]) if shape else 0
            return shard(func(*args[:-1], self._global_shape(shape, m), **kwargs), m, self.world) if m else None
        if func in _LIKE and args[0].dim() > 0:
            like = args[0]
            m = self._per_example(like.shape[0])
            if not m:
                return None
            options = {"dtype": kwargs.get("dtype") or like.dtype, "device": kwargs.get("device") or like.device}
            sized = torch.rand if func is torch.rand_like else torch.randn
            return shard(sized(self._global_shape(like.shape, m), **options), m, self.world)
        if func is torch.bernoulli and len(args) == 1 and args[0].dim() > 0:
            p = args[0]
            m = self._per_example(p.shape[0])
            if not m:
                return None
            parts = [torch.empty_like(p) for _ in range(self.world.size)]
            dist.all_gather(parts, p.contiguous())  # (N ranks) x (m * b, ...) -> the global (m, N, b) order
            full = torch.stack(parts).view(self.world.size, m, self.rows, *p.shape[1:]).transpose(0, 1)
            return shard(func(full.reshape(-1, *p.shape[1:]), **kwargs), m, self.world)
        return None
