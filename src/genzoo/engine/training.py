"""The one training loop: `fit()` trains any registered model (it knows nothing of their internals).

What it owns so the models do not have to: the device, bf16 autocast (its cast cache never outlives an
optimizer step), the CPU threads (its share of the cores, genzoo.engine.processes), seeding, batches drawn on the
device from a seeded permutation (no DataLoader, no host sync per step), logging every N steps, a NaN/inf guard,
periodic validation, atomic checkpoints with exact resume (a run killed with SIGKILL resumes from the last
checkpoint; SIGTERM saves one first), and a progress bar. Started by torchrun, the same loop trains data-parallel
over the ranks (genzoo.engine.distributed: split batches, averaged gradients, global BatchNorm, one writer).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from genzoo.engine import distributed
from genzoo.engine.errors import GenzooError, Interrupted, TrainingError
from genzoo.engine.io import load_torch, save_torch
from genzoo.engine.processes import ThreadBudget
from genzoo.params import EngineParams, TrainConfig

LogFn = Callable[[int, dict[str, float]], None]


@dataclass
class FitResult:
    steps: int
    seconds: float  # wall time of this call (a resumed run counts only its own part)
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)  # every logged row: {"step": ..., name: value}
    earlier_seconds: float | None = 0.0  # training time the checkpoint had kept (None: a checkpoint too old to say)
    threads: list[list[int]] = field(default_factory=list)  # [step, CPU threads] from that step on (this call)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenzooError(f"engine.device: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenzooError(f"engine.device: {name!r} asked for, but no CUDA device is visible (use auto or cpu)")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def is_main_process() -> bool:
    """Rank 0 of a process group (or of torchrun's RANK before one is joined); a plain process is."""
    return distributed.world().rank == 0 and int(os.environ.get("RANK", "0")) == 0


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds the CPU and every CUDA generator
    torch.use_deterministic_algorithms(False)


def autocast(device: torch.device, precision: str, cache: bool = True):
    """bf16 autocast on CUDA (Hopper runs it at full tensor-core rate) or a CPU (AVX512-BF16 / AMX units; the
    caller passes EngineParams.precision_on(device), with the model section when it trains one); fp32 otherwise.
    One region must not span an optimizer step with `cache` on (a training step runs through EagerStep, which sees
    to that)."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def _drop_cast_cache(*_) -> None:
    torch.clear_autocast_cache()


class EagerStep:
    """Runs `model.train_step` eagerly, under bf16 autocast when `enabled`, with the cast cache emptied after every
    optimizer step.

    Autocast keeps the bf16 copy of each weight for the length of its region. An optimizer step changes the fp32
    weight in place but not that copy, so a second forward in the same `train_step` (a GAN's k critic steps, the
    AAE's regularization phase after its reconstruction update, SimGAN's second refiner update) would run, and take
    its gradients, at the old weights. A post-step hook on every optimizer drops the cache: casts are shared within
    a forward and backward (an RNN's weights over its time steps), never across an update. `close()` removes the
    hooks. Disabled (fp32), it calls `train_step` as it is.
    """

    def __init__(self, train_step: Callable, opts: dict, device_type: str, enabled: bool):
        self.train_step, self.device_type, self.enabled = train_step, device_type, enabled
        self.hooks = [opt.register_step_post_hook(_drop_cast_cache) for opt in opts.values()] if enabled else []

    def __call__(self, batch: dict[str, torch.Tensor], opts: dict) -> dict[str, torch.Tensor]:
        if not self.enabled:
            return self.train_step(batch, opts)
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.train_step(batch, opts)

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []


class GraphedStep:
    """Runs `model.train_step` as one CUDA graph replay: forward, backward and optimizer step in one launch.

    MNIST-sized models are launch-bound (a VAE step is ~100 tiny kernels), so replaying a captured graph is
    many times faster than eager PyTorch. The first WARMUP steps run eagerly on a side stream (they are real
    training steps, and they create the optimizer state), then one step is captured and every later step copies
    its batch into the static input buffers and replays. Optimizers become capturable with tensor learning rates,
    so LR schedules still reach the graph. Should capture fail, training goes on eagerly with a warning.
    """

    WARMUP = 3

    def __init__(self, train_step: Callable, opts: dict, device: torch.device, precision: str):
        self.train_step, self.opts, self.device, self.precision = train_step, opts, device, precision
        self.static: dict[str, torch.Tensor] | None = None
        self.graph: torch.cuda.CUDAGraph | None | bool = None
        self.outputs: dict[str, torch.Tensor] = {}
        self.eager_steps = 0
        self.eager: EagerStep | None = None  # after a failed capture: autocast without a stale cast cache
        for opt in opts.values():
            for group in opt.param_groups:
                if "capturable" in group:
                    group["capturable"] = True
                group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def __call__(self, batch: dict[str, torch.Tensor], opts: dict) -> dict[str, torch.Tensor]:
        if self.graph is False:
            return self.eager(batch, opts)
        if self.static is None:
            self.static = {k: v.clone() for k, v in batch.items()}
        for name, value in batch.items():
            self.static[name].copy_(value)
        if self.graph is None and self.eager_steps < self.WARMUP:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), autocast(self.device, self.precision, cache=False):
                outputs = self.train_step(self.static, opts)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.eager_steps += 1
            return {k: v.clone() for k, v in outputs.items()}
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph), autocast(self.device, self.precision, cache=False):
                    self.outputs = self.train_step(self.static, opts)
            except Exception as err:  # an op that cannot be captured: stay correct, just slower
                print(f"warning: CUDA graph capture failed ({type(err).__name__}: {err}); training eagerly")
                self.graph = False
                self.eager = EagerStep(self.train_step, self.opts, self.device.type, self.precision == "bf16")
                return self(batch, opts)
            self.graph = graph
        self.graph.replay()
        return self.outputs

    def close(self) -> None:
        if self.eager is not None:
            self.eager.close()


def eager_reason(config: TrainConfig) -> str | None:
    """Why a run of `config` must not be captured as a CUDA graph, or None. GraphedStep hands the graph its
    learning rates as tensors, but SGD's momentum stays a Python number the captured kernels keep: a momentum
    that changes during the run (MomentumRamp) would never reach them."""
    if getattr(config, "momentum_saturate_epoch", 0):
        return "its SGD momentum ramps per epoch (momentum_saturate_epoch), and a graph keeps the captured momentum"
    return None


def use_cuda_graph(engine: EngineParams, device: torch.device, config: TrainConfig, label: str = "") -> bool:
    """Whether fit() (one process) captures the training step as a CUDA graph: on CUDA with engine.cuda_graphs,
    unless eager_reason says otherwise, in one printed line."""
    if not (engine.cuda_graphs and device.type == "cuda"):
        return False
    why = eager_reason(config)
    if why:
        print(f"{label or 'fit'}: training eagerly on CUDA, not as a CUDA graph: {why}")
    return why is None


def fit(model: nn.Module, train: dict[str, torch.Tensor], *, config: TrainConfig, engine: EngineParams,
        seed: int, val: dict[str, torch.Tensor] | None = None, checkpoint: Path | None = None,
        fingerprint: str = "", on_log: LogFn | None = None, stop_after: int | None = None,
        monitor: Callable[[nn.Module], dict[str, float]] | None = None, progress: bool = True,
        stop_at: float | None = None, label: str = "", run_id: str | None = None,
        on_checkpoint: Callable[[], None] | None = None, steps: int | None = None) -> FitResult:
    """Train `model` on `train` for `config.epochs` epochs; see the module docstring for what it guarantees.

    `steps` counts the run in updates instead (epochs of `train` follow one another until then): models trained on
    sets of different sizes get the same number of updates, as AnoGAN's one-class models trained together do.
    A config whose `max_steps` (TrainConfig's) is > 0 stops after that many steps even inside an epoch.
    `fingerprint` identifies the run (params + data hash): a checkpoint with another fingerprint is stale and is
    ignored. `stop_after` ends the call early after that global step, as an interruption would (for tests).
    `stop_at` is a time.monotonic() deadline: past it the run saves a checkpoint and raises Interrupted, as on
    SIGTERM, so a machine lent by the minute can carry the checkpoint to the next lease (pipeline/gpu_models.py).
    `monitor(model)` runs beside validation (model in eval mode, training RNG untouched) and its numbers are
    logged as they are, e.g. the evaluator's class histogram of samples, so mode collapse shows while it happens.
    `label` names the progress bar (a stage passes its registry name: `aae_2d`, not the file's `aae`) and the
    params section a NaN message points to.
    `run_id` (the tracker's run this training logs to) is kept in every checkpoint, so a resumed stage continues
    the same run (`checkpoint_run_id`); `on_checkpoint()` runs just before each checkpoint is written (a stage
    flushes its buffered metrics there, so the tracker always holds every step a checkpoint holds).
    """
    device = resolve_device(engine.device)
    world = distributed.world()
    model.to(device).train()
    train = {k: v.to(device) for k, v in train.items()}
    val = {k: v.to(device) for k, v in val.items()} if val is not None else None
    n = model.rows(train) if hasattr(model, "rows") else rows(train)  # copies with sets of their own: the least
    minibatches = getattr(model, "batches_per_step", 1)
    batch_size = min(config.batch_size * minibatches, n)  # rows one step consumes (all ranks together)
    if world.distributed:
        if hasattr(model, "draw_batch"):
            raise GenzooError(f"{label or 'fit'}: copies trained as one (genzoo.engine.copies) run in one process")
        distributed.check_batch(batch_size, minibatches, world, label)
        distributed.synchronize_batchnorm(model, device)
    steps_per_epoch = n // batch_size  # drop the ragged last batch: every step sees a full batch
    if steps is not None and steps < 1:
        raise ValueError(f"{label or 'fit'}: steps must be at least 1, got {steps}")
    total = steps if steps is not None else config.epochs * steps_per_epoch
    if config.max_steps:  # a model section may cap the run (a cpu profile's budget)
        total = min(total, config.max_steps)
    opts = model.configure_optimizers()
    schedules = [_schedule(opt, config.lr_schedule, total, steps_per_epoch, config) for opt in opts.values()]
    schedules += momentum_ramps(opts, config, steps_per_epoch)  # stepped and checkpointed as the lr schedules are

    sums: dict[str, torch.Tensor] = {}
    history: list[dict[str, float]] = []
    start, earlier = 0, 0.0
    state = _load_checkpoint(checkpoint, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        for name, opt in opts.items():
            opt.load_state_dict(state["opts"][name])
        for sched, sched_state in zip(schedules, state["schedules"]):
            sched.load_state_dict(sched_state)
        sums = {k: v.to(device) for k, v in state["sums"].items()}
        history = state["history"]
        start = state["step"]
        earlier = state.get("seconds")  # None: written before checkpoints kept the time
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    else:
        seed_everything(seed)
    if world.distributed:
        distributed.broadcast_state(model)
    saved = start if state is not None else None  # the step of the checkpoint on disk this run can resume from
    step_fn = torch.compile(model.train_step) if engine.compile else model.train_step
    precision = engine.precision_on(device, config)  # CUDA: engine.precision; a CPU: the model section's own
    if world.distributed:  # collectives run in the step's hooks: eager, the ranks' randomness shared
        shared = distributed.SharedRandomness(batch_size // minibatches // world.size, minibatches, world)
        step_fn = EagerStep(_inside(shared, step_fn), opts, device.type, precision == "bf16")
    elif use_cuda_graph(engine, device, config, label):  # after the optimizer state is loaded: loading would turn
        step_fn = GraphedStep(step_fn, opts, device, engine.precision)  # the tensor learning rates back to floats
    else:
        step_fn = EagerStep(step_fn, opts, device.type, precision == "bf16")

    def save(step: int) -> None:
        nonlocal saved
        if checkpoint is None or not is_main_process():
            return
        if on_checkpoint is not None:
            on_checkpoint()
        blob = {"fingerprint": fingerprint, "step": step, "model": model.state_dict(),
                "opts": {k: o.state_dict() for k, o in opts.items()},
                "schedules": [s.state_dict() for s in schedules], "sums": sums, "history": history,
                "rng_cpu": torch.get_rng_state(), "run_id": run_id,
                "seconds": None if earlier is None else earlier + time.perf_counter() - began}
        if device.type == "cuda":
            blob["rng_cuda"] = torch.cuda.get_rng_state(device)
        save_torch(blob, checkpoint)
        saved = step

    def require_finite(step: int) -> None:
        """Never checkpoint NaN weights: the last good checkpoint must stay the last good one."""
        for name, p in model.state_dict().items():
            if p.is_floating_point() and not torch.isfinite(p).all():
                raise _stopped(f"weight {name} is not finite at step {step}", checkpoint, saved, engine, config,
                               label)

    def log(step: int, row: dict[str, float]) -> None:
        history.append({"step": step, **row})
        if on_log is not None and is_main_process():
            on_log(step, row)

    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(_StopFlag())
        threads = stack.enter_context(ThreadBudget(engine.threads))
        stack.callback(step_fn.close)
        if world.distributed:
            for hook in distributed.average_gradients(opts, world):
                stack.callback(hook.remove)
        threads_log = [[start, threads.threads]]
        if progress and is_main_process():
            tqdm.write(threads.describe())
        bar = tqdm(total=total, initial=start, disable=not (progress and is_main_process()), unit="step",
                   dynamic_ncols=True, mininterval=1.0, desc=label or type(model).__module__.rsplit(".", 1)[-1])
        stack.callback(bar.close)
        began = time.perf_counter()
        last_log_time, last_log_step = began, _last_train_step(history)  # the steps `sums` has accumulated since
        perm = None
        draw = getattr(model, "draw_batch", None)  # genzoo.engine.copies: each copy its own order of the rows
        for step in range(start, total):
            epoch, offset = divmod(step, steps_per_epoch)
            if draw is not None:
                batch = draw(train, step, steps_per_epoch, batch_size)
            else:
                if perm is None or offset == 0:
                    perm = _permutation(n, seed, epoch, device)
                idx = perm[offset * batch_size:(offset + 1) * batch_size]
                if world.distributed:
                    idx = distributed.shard(idx, minibatches, world)
                batch = {k: v[idx] for k, v in train.items()}
            losses = step_fn(batch, opts)
            for sched in schedules:
                sched.step()
            for name, value in losses.items():  # stays on the device: no sync in the hot loop
                sums[name] = sums[name] + value.float() if name in sums else value.float().clone()
            done = step + 1
            if done % engine.log_every == 0 or done == total:
                count = done - last_log_step
                if world.distributed:
                    sums = distributed.mean_over_ranks(sums, world)
                row = {f"train/{k}": v.item() / count for k, v in sums.items()}
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:
                    raise _stopped(f"{', '.join(bad)} became {row[bad[0]]} by step {done}", checkpoint, saved,
                                   engine, config, label)
                now = time.perf_counter()
                row["train/steps_per_s"] = (done - max(last_log_step, start)) / max(now - last_log_time, 1e-9)
                last_log_time, last_log_step = now, done
                log(done, row)
                sums = {}
                bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in row.items()}, refresh=False)
            if (done % engine.eval_every == 0 or done == total) and is_main_process():
                if val is not None:
                    log(done, {f"val/{k}": v for k, v in validate(model, val, 4 * config.batch_size).items()})
                if monitor is not None:
                    log(done, _isolated(monitor, model))
            if done % engine.checkpoint_every == 0 and done < total:
                require_finite(done)
                save(done)
            bar.update(1)
            resized = threads.check()
            if resized is not None:
                threads_log.append([done, resized])
                if is_main_process():
                    tqdm.write(f"{threads.describe()}, from step {done}")
            late = stop_at is not None and done < total and time.monotonic() >= stop_at
            halt = stop.requested or late
            if world.distributed:  # the ranks agree to stop at the same step: at log steps (no sync per step)
                halt = done < total and done % engine.log_every == 0 and distributed.any_rank(halt, device)
            if halt or (stop_after is not None and done >= stop_after):
                require_finite(done)
                save(done)
                if halt:
                    why = "SIGTERM" if stop.requested else "the deadline" if late else "another rank's stop"
                    raise Interrupted(f"stopped by {why} at step {done}/{total}; checkpoint saved to "
                                      f"{checkpoint}; run the same command again to resume", done, total)
                return FitResult(done, time.perf_counter() - began, start, history, earlier, threads_log)
        bar.close()
        require_finite(total)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return FitResult(total, time.perf_counter() - began, start, history, earlier, threads_log)


def _inside(mode, step_fn: Callable) -> Callable:
    """`step_fn` run under a TorchFunctionMode (distributed: the ranks' shared per-example randomness)."""
    def step(batch, opts):
        with mode:
            return step_fn(batch, opts)
    return step


def checkpoint_run_id(path: Path | None, fingerprint: str) -> str | None:
    """The tracker's run a resumable checkpoint belongs to (None: no checkpoint, another fingerprint's, one
    written before checkpoints kept it, or one that cannot be read). Reads no weights (memory-mapped)."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return state.get("run_id") if state.get("fingerprint") == fingerprint else None


def _stopped(problem: str, checkpoint: Path | None, saved: int | None, engine: EngineParams, config: TrainConfig,
             label: str) -> TrainingError:
    """The NaN guard's message: what went wrong, which checkpoint is kept (or that none exists yet), what to
    change, and, under DVC, how to get back the outputs the stage had before."""
    lr = f"`{label}.lr`" if label else "the learning rate `lr`"
    advice = f"lower {lr} (now {config.lr:g}) or check the data"
    if checkpoint is None:
        kept = "This run keeps no checkpoints, so a re-run starts from step 0"
    elif saved is None:
        kept = (f"No checkpoint of this run exists yet (the first would be written at step "
                f"{engine.checkpoint_every}, engine.checkpoint_every), so a re-run starts from step 0")
    else:
        kept = (f"The checkpoint of step {saved} is kept ({checkpoint}): a re-run with the same params resumes "
                f"there (and likely meets the same), changed params start afresh")
    message = f"{problem}: training stopped. {kept}. To go on, {advice}."
    stage = os.environ.get("DVC_STAGE")  # DVC runs every stage command with its name in DVC_STAGE
    if stage:
        message += (f" DVC removed the outputs {stage} had before running it: `dvc checkout {stage}` brings them "
                    f"back.")
    return TrainingError(message)


def rows(data: dict[str, torch.Tensor]) -> int:
    """How many examples a split or batch holds (every tensor in it has one row per example; base splits key
    images "x", derived sets "a"/"b" or "x")."""
    return len(next(iter(data.values())))


def _last_train_step(history: list[dict[str, float]]) -> int:
    steps = [row["step"] for row in history if any(k.startswith("train/") for k in row)]
    return int(steps[-1]) if steps else 0


def validate(model: nn.Module, data: dict[str, torch.Tensor], batch_size: int) -> dict[str, float]:
    """Mean of `model.validate` over the whole split, with the training RNG stream left untouched."""
    def mean_over_split(model: nn.Module) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        n = rows(data)
        for start in range(0, n, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in data.items()}
            for name, value in model.validate(batch).items():
                weighted = value.float() * rows(batch)
                totals[name] = totals[name] + weighted if name in totals else weighted
        return {k: v.item() / n for k, v in totals.items()}

    return _isolated(mean_over_split, model)


def _isolated(fn: Callable[[nn.Module], dict[str, float]], model: nn.Module) -> dict[str, float]:
    """Run `fn(model)` in eval mode without touching the training RNG stream (so resume stays exact)."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        result = fn(model)
    model.train()
    return result


def _permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Epoch e's batch order depends on (seed, e) only, so a resumed run draws exactly the same batches."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen, device=device)


GOODFELLOW_DECAY, GOODFELLOW_MIN_LR = 1.000004, 1e-6  # the 2014 GAN code's lr: divided by 1.000004 every update


def burda_stage(epoch: int) -> int:
    """Burda et al. 2016's schedule: stage i (i = 0..7) lasts 3^i passes over the data at lr * 10^(-i/7), so
    3280 passes in all; stage 7 goes on after them. The stage that pass `epoch` (0-based) falls in."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return stage


def _schedule(opt: torch.optim.Optimizer, kind: str, total: int, steps_per_epoch: int,
              config: TrainConfig | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    if kind == "exponential":  # Triple-GAN's paper recipe: epoch e (0-based) at lr * lr_decay^max(0, e - start)
        if not hasattr(config, "lr_decay"):
            raise GenzooError("lr_schedule exponential reads lr_decay and lr_decay_start_epoch from the model's "
                              "section, and this section has none")
        decay, start = config.lr_decay, config.lr_decay_start_epoch
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: decay ** max(0, s // steps_per_epoch - start))
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    if kind == "burda":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 10 ** (-burda_stage(s // steps_per_epoch) / 7))
    if kind == "goodfellow":  # LambdaLR scales each group's own initial lr: the floor is that lr's fraction
        floors = [GOODFELLOW_MIN_LR / float(group.get("initial_lr", group["lr"])) for group in opt.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(opt, [lambda s, f=f: max(GOODFELLOW_DECAY ** -s, f) for f in floors])
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


class MomentumRamp:
    """SGD's momentum from `start` to `final`, linear in the epoch: epoch e (1-based) trains at
    start + (final - start) * clip((e - 1) / (saturate - 1), 0, 1), so `final` from epoch `saturate` on. That is
    our reading of pylearn2's MomentumAdjustor(start=1, saturate) in the 2014 GAN code's mnist.yaml (its epochs
    counted from 1). Set on every param group that has a momentum before each step; stepped and checkpointed
    beside the lr schedules (its state: the step)."""

    def __init__(self, opt: torch.optim.Optimizer, start: float, final: float, saturate: int, steps_per_epoch: int):
        self.opt, self.start, self.final, self.saturate = opt, start, final, saturate
        self.steps_per_epoch, self.steps = steps_per_epoch, 0
        self._apply()

    def momentum(self, step: int) -> float:
        epoch = step // self.steps_per_epoch + 1
        alpha = 1.0 if self.saturate <= 1 else min(max((epoch - 1) / (self.saturate - 1), 0.0), 1.0)
        return self.start + (self.final - self.start) * alpha

    def _apply(self) -> None:
        for group in self.opt.param_groups:
            if "momentum" in group:
                group["momentum"] = self.momentum(self.steps)

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self._apply()


def momentum_ramps(opts: dict, config: TrainConfig, steps_per_epoch: int) -> list[MomentumRamp]:
    """A ramp per optimizer where the model section asks for one (`momentum_saturate_epoch` > 0, from `momentum`
    to `momentum_final`: the GAN's paper recipe); none otherwise."""
    saturate = getattr(config, "momentum_saturate_epoch", 0)
    if not saturate:
        return []
    return [MomentumRamp(opt, config.momentum, config.momentum_final, saturate, steps_per_epoch)
            for opt in opts.values()]


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        state = load_torch(path)
    except Exception as err:  # a checkpoint is only a cache of work: a broken one costs time, not correctness
        print(f"warning: ignoring unreadable checkpoint {path}: {err}")
        return None
    if state.get("fingerprint") != fingerprint:
        print(f"warning: {path} belongs to other params or data; starting afresh")
        return None
    print(f"resuming from {path} at step {state['step']}")
    return state


class _StopFlag:
    """Turns SIGTERM into a flag the loop checks between steps, so it can save before leaving."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopFlag":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
