"""The shared engine (genzoo.engine.training): seeding, exact resume, the NaN guard and what its message says,
SIGTERM, a disk that fills while a checkpoint is written, logging, a step of several minibatches, the CPU threads,
bf16 autocast without stale casts, and the CUDA-graph step."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import signal
import time
from dataclasses import dataclass

import pytest
import torch
from helpers import SHAPE, images, snapshot, tiny_model
from torch import nn

import genzoo.engine.io as engine_io
from genzoo.data.loading import load_split
from genzoo.engine.errors import GenzooError, TrainingError, WriteError
from genzoo.engine.processes import usable_cores
from genzoo.engine.training import (
    EagerStep,
    GraphedStep,
    Interrupted,
    checkpoint_run_id,
    fit,
    resolve_device,
    seed_everything,
)
from genzoo.models.registry import build_model
from genzoo.params import EngineParams, TrainConfig

ENGINE = EngineParams(device="cpu", precision="fp32", log_every=2, eval_every=4, checkpoint_every=4)


def tiny_vae(tiny_params):
    return build_model("vae", tiny_params.model("vae"), SHAPE, 10)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def run(tiny_params, data, checkpoint=None, stop_after=None, fingerprint="f", epochs=2, log=None):
    config = dataclasses.replace(tiny_params.model("vae"), epochs=epochs)
    model = tiny_vae(tiny_params)
    result = fit(model, data["train"], config=config, engine=ENGINE, seed=3, val=data["val"],
                 checkpoint=checkpoint, fingerprint=fingerprint, stop_after=stop_after, on_log=log, progress=False)
    return model, result


@pytest.fixture(scope="module")
def data(tiny_processed):
    return {split: load_split(tiny_processed, split) for split in ("train", "val")}


def test_same_seed_same_weights(tiny_params, data):
    a, _ = run(tiny_params, data)
    b, _ = run(tiny_params, data)
    assert_same_weights(snapshot(a), snapshot(b))


def test_resume_after_interruption_equals_uninterrupted_run(tiny_params, data, tmp_path):
    """Stop after 7 steps (not a checkpoint multiple), resume from that checkpoint: the same final weights."""
    straight, full = run(tiny_params, data)
    ckpt = tmp_path / "ckpt.pt"
    _, partial = run(tiny_params, data, checkpoint=ckpt, stop_after=7)
    assert partial.steps == 7 and ckpt.exists()
    resumed, rest = run(tiny_params, data, checkpoint=ckpt)
    assert rest.resumed_from == 7 and rest.steps == full.steps
    assert_same_weights(snapshot(straight), snapshot(resumed))
    assert [r["step"] for r in rest.history] == [r["step"] for r in full.history]  # the log survives resume


def test_checkpoint_of_other_params_is_not_resumed(tiny_params, data, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    run(tiny_params, data, checkpoint=ckpt, stop_after=4, fingerprint="old")
    _, result = run(tiny_params, data, checkpoint=ckpt, fingerprint="new")
    assert result.resumed_from == 0


def test_unreadable_checkpoint_is_ignored(tiny_params, data, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"not a checkpoint")
    _, result = run(tiny_params, data, checkpoint=ckpt)
    assert result.resumed_from == 0


@dataclass
class ToyConfig(TrainConfig):
    nan_at: int = 5  # the step whose loss (and weights) turn NaN
    sigterm_at: int = 0


class Toy(nn.Module):
    """A linear model that misbehaves on cue, to test what the engine does about it."""

    Config = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config, self.layer, self.calls = config, nn.Linear(4, 1), 0

    def configure_optimizers(self):
        return {"model": torch.optim.SGD(self.parameters(), lr=self.config.lr)}

    def train_step(self, batch, opt):
        self.calls += 1
        if self.calls == self.config.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        loss = self.layer(batch["x"].float()).pow(2).mean()
        if self.calls >= self.config.nan_at:
            loss = loss * float("nan")
        opt["model"].zero_grad()
        loss.backward()
        opt["model"].step()
        return {"loss": loss.detach()}


TOY_DATA = {"x": torch.arange(64.0).view(16, 4) / 64}


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """The message names the checkpoint that is kept (step 4 of a checkpoint every 2 steps), what to change, and,
    outside DVC, says nothing about restoring outputs (nothing removed them)."""
    monkeypatch.delenv("DVC_STAGE", raising=False)
    ckpt = tmp_path / "ckpt.pt"
    engine = dataclasses.replace(ENGINE, log_every=1, checkpoint_every=2)
    model = Toy(ToyConfig(epochs=10, batch_size=4, lr=0.1, nan_at=6))
    with pytest.raises(TrainingError) as stopped:
        fit(model, TOY_DATA, config=model.config, engine=engine, seed=0, checkpoint=ckpt, progress=False, label="toy")
    message = str(stopped.value)
    assert message.startswith("train/loss became nan by step 6: training stopped.")
    assert f"The checkpoint of step 4 is kept ({ckpt})" in message and "lower `toy.lr` (now 0.1)" in message
    assert "No checkpoint" not in message and "dvc checkout" not in message and "\n" not in message
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_nan_before_the_first_checkpoint_says_none_exists_and_how_to_get_the_outputs_back(tmp_path, monkeypatch):
    """NaN at step 3, first checkpoint due at step 1000: no checkpoint is claimed. Under DVC (which sets DVC_STAGE
    and removed the stage's outputs before running it) the message says how to get them back."""
    monkeypatch.setenv("DVC_STAGE", "train@toy")
    ckpt = tmp_path / "ckpt.pt"
    engine = dataclasses.replace(ENGINE, log_every=1, checkpoint_every=1000)
    model = Toy(ToyConfig(epochs=10, batch_size=4, lr=0.1, nan_at=3))
    with pytest.raises(TrainingError) as stopped:
        fit(model, TOY_DATA, config=model.config, engine=engine, seed=0, checkpoint=ckpt, progress=False, label="toy")
    message = str(stopped.value)
    assert message.startswith("train/loss became nan by step 3: training stopped.")
    assert "No checkpoint of this run exists yet (the first would be written at step 1000" in message
    assert "is kept" not in message and not ckpt.exists()
    assert "lower `toy.lr` (now 0.1)" in message
    assert message.endswith("DVC removed the outputs train@toy had before running it: `dvc checkout train@toy` "
                            "brings them back.")


def test_a_checkpoint_of_other_params_is_not_claimed_as_kept(tmp_path):
    """A checkpoint file of other params sits there, but this run cannot resume it: not 'kept' for this run."""
    ckpt = tmp_path / "ckpt.pt"
    calm = ToyConfig(epochs=1, batch_size=4, lr=0.1, nan_at=10**9)
    fit(Toy(calm), TOY_DATA, config=calm, engine=ENGINE, seed=0, checkpoint=ckpt, fingerprint="old", progress=False,
        stop_after=2)
    model = Toy(ToyConfig(epochs=10, batch_size=4, lr=0.1, nan_at=3))
    engine = dataclasses.replace(ENGINE, log_every=1, checkpoint_every=1000)
    with pytest.raises(TrainingError, match="No checkpoint of this run exists yet"):
        fit(model, TOY_DATA, config=model.config, engine=engine, seed=0, checkpoint=ckpt, fingerprint="new",
            progress=False)


def test_a_disk_that_fills_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path, monkeypatch):
    """The second checkpoint hits ENOSPC: training stops with one line naming the file and saying the previous
    version is intact; the step-2 checkpoint still loads, and a re-run resumes from it."""
    ckpt = tmp_path / "ckpt.pt"
    writes = []
    real = engine_io._write_all

    def filling(handle, data):
        writes.append(len(data))
        if len(writes) == 2:
            handle.write(data[: len(data) // 2])  # half of it reached the disk, then the disk was full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, data)

    monkeypatch.setattr(engine_io, "_write_all", filling)
    config = ToyConfig(epochs=3, batch_size=4, lr=0.1, nan_at=10**9)
    engine = dataclasses.replace(ENGINE, checkpoint_every=2)
    with pytest.raises(WriteError) as full:
        fit(Toy(config), TOY_DATA, config=config, engine=engine, seed=0, checkpoint=ckpt, progress=False)
    message = str(full.value)
    assert message == (f"could not write {ckpt}: No space left on device; its previous version is intact; free some "
                       f"space and run the same command again")
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no half-written temp file left behind
    monkeypatch.setattr(engine_io, "_write_all", real)
    result = fit(Toy(config), TOY_DATA, config=config, engine=engine, seed=0, checkpoint=ckpt, progress=False)
    assert (result.resumed_from, result.steps) == (2, 12)


def test_checkpoints_keep_the_run_id_and_flush_the_tracker_first(tmp_path):
    """`run_id` travels with every checkpoint (a resumed stage continues that MLflow run); `on_checkpoint` runs
    before each checkpoint is written, so the tracker holds every step the checkpoint holds."""
    ckpt = tmp_path / "ckpt.pt"
    config = ToyConfig(epochs=3, batch_size=4, lr=0.1, nan_at=10**9)
    seen = []
    fit(Toy(config), TOY_DATA, config=config, engine=ENGINE, seed=0, checkpoint=ckpt, progress=False, stop_after=9,
        run_id="abc123", fingerprint="f", on_checkpoint=lambda: seen.append(ckpt.exists() and torch.load(ckpt)["step"]))
    assert seen == [False, 4, 8]  # before the step-4, step-8 and step-9 (stop) checkpoints were written
    assert torch.load(ckpt, weights_only=True)["run_id"] == "abc123"
    assert checkpoint_run_id(ckpt, "f") == "abc123"
    assert checkpoint_run_id(ckpt, "other params") is None
    assert checkpoint_run_id(tmp_path / "none.pt", "f") is None


def test_sigterm_saves_a_checkpoint_then_resume_finishes(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    config = ToyConfig(epochs=3, batch_size=4, lr=0.1, nan_at=10**9, sigterm_at=5)
    with pytest.raises(Interrupted, match="SIGTERM at step 5/12"):
        fit(Toy(config), TOY_DATA, config=config, engine=ENGINE, seed=0, checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=True)["step"] == 5
    calm = dataclasses.replace(config, sigterm_at=0)
    result = fit(Toy(calm), TOY_DATA, config=calm, engine=ENGINE, seed=0, checkpoint=ckpt, progress=False)
    assert (result.resumed_from, result.steps) == (5, 12)


def test_deadline_pauses_at_a_checkpoint_that_keeps_the_training_time(tiny_params, data, tmp_path):
    """A passed `stop_at` stops after one step as SIGTERM would; the resumed run ends with the same weights
    as a straight one and knows the time the first part took."""
    straight, full = run(tiny_params, data)
    ckpt = tmp_path / "ckpt.pt"
    config = dataclasses.replace(tiny_params.model("vae"), epochs=2)
    with pytest.raises(Interrupted, match=rf"the deadline at step 1/{full.steps}") as stopped:
        fit(tiny_vae(tiny_params), data["train"], config=config, engine=ENGINE, seed=3, val=data["val"],
            checkpoint=ckpt, fingerprint="f", progress=False, stop_at=time.monotonic())
    assert (stopped.value.step, stopped.value.total) == (1, full.steps)
    kept = torch.load(ckpt, weights_only=True)["seconds"]
    assert kept > 0
    resumed, rest = run(tiny_params, data, checkpoint=ckpt)
    assert (rest.resumed_from, rest.earlier_seconds) == (1, kept)
    assert_same_weights(snapshot(straight), snapshot(resumed))
    assert full.earlier_seconds == 0.0  # a run from scratch had no earlier part


def test_the_progress_bar_is_named_after_the_stage_not_the_file(tiny_params, data, capsys):
    """A second registry name (aae_2d, pixelrnn_diagonal) trains a model of another file: its stage's bar says
    which stage it is; without a label the bar falls back to the file's name."""
    config = dataclasses.replace(tiny_params.model("vae"), epochs=1)
    fit(tiny_vae(tiny_params), data["train"], config=config, engine=ENGINE, seed=3, stop_after=1, label="vae_2d")
    fit(tiny_vae(tiny_params), data["train"], config=config, engine=ENGINE, seed=3, stop_after=1)
    bars = capsys.readouterr().err
    assert "vae_2d:" in bars and "vae:" in bars.replace("vae_2d:", "")


def test_a_fit_reports_its_threads_and_leaves_the_count_as_it_was(tiny_params, data):
    """Alone (the tests' runtime folder holds no other training), `auto` keeps the threads the process had."""
    outside = torch.get_num_threads()
    torch.set_num_threads(2)  # two, whatever the test run's OMP_NUM_THREADS: a fixed count of 1 must differ
    try:
        _, result = run(tiny_params, data)
        assert result.threads == [[0, min(2, usable_cores())]] and torch.get_num_threads() == 2
        fixed = dataclasses.replace(ENGINE, threads=1)
        config = dataclasses.replace(tiny_params.model("vae"), epochs=1)
        out = fit(tiny_vae(tiny_params), data["train"], config=config, engine=fixed, seed=3, progress=False)
        assert out.threads == [[0, 1]] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outside)


def test_logs_every_n_steps_with_means_and_validation(tiny_params, data):
    rows = []
    _, result = run(tiny_params, data, log=lambda step, row: rows.append((step, row)))
    train_steps = [s for s, r in rows if "train/loss" in r]
    val_steps = [s for s, r in rows if "val/elbo" in r]
    assert train_steps == sorted(set(range(2, result.steps + 1, 2)) | {result.steps})
    assert val_steps == sorted(set(range(4, result.steps + 1, 4)) | {result.steps})  # and once at the end
    assert all(r["train/loss"] > 0 for s, r in rows if "train/loss" in r)


def test_training_lowers_the_loss(tiny_params, data):
    _, result = run(tiny_params, data, epochs=6)
    losses = [r["train/loss"] for r in result.history if "train/loss" in r]
    assert losses[-1] < losses[0]


def test_device_names_are_checked():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(GenzooError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(GenzooError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["gan", "dcgan"])
def test_the_engine_hands_each_step_k_batches(name, tiny_params, tiny_processed):
    """A model that takes `batches_per_step` minibatches per step (a GAN's k D updates) gets them as one batch."""
    train = load_split(tiny_processed, "train")
    config = dataclasses.replace(tiny_params.model(name), d_steps=2, batch_size=16, epochs=1)
    model = build_model(name, config, SHAPE, 10)
    rows: list[int] = []
    step = model.train_step
    model.train_step = lambda batch, opts: rows.append(len(batch["x"])) or step(batch, opts)
    result = fit(model, train, config=config, engine=EngineParams(device="cpu", log_every=2), seed=0, progress=False)
    assert rows == [32] * (len(train["x"]) // 32) and result.steps == len(rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["gan", "dcgan"])
def test_train_step_is_captured_as_one_cuda_graph(name, tiny_params):
    seed_everything(0)
    device = torch.device("cuda")
    model = tiny_model(name, tiny_params, d_steps=2).to(device).train()
    opts = model.configure_optimizers()
    step = GraphedStep(model.train_step, opts, device, "bf16")
    norms = []
    for i in range(GraphedStep.WARMUP + 4):
        out = step({k: images(16, seed=i)[k].to(device) for k in ("x", "y")}, opts)  # the engine's train keys
        norms.append(out["grad_norm_g"].clone())
    assert isinstance(step.graph, torch.cuda.CUDAGraph), "capture failed: the step fell back to eager"
    assert all(torch.isfinite(v) for v in out.values())
    assert len({round(float(n), 6) for n in norms[-3:]}) == 3, "replays must draw fresh noise and batches"


class TwoUpdates(nn.Module):
    """A train_step with two optimizer steps (a GAN's k critic steps, the AAE's two phases): the second forward must
    run at the weights the first update left."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(16, 16)

    def configure_optimizers(self):
        return {"model": torch.optim.SGD(self.parameters(), lr=0.5)}

    def train_step(self, batch, opts):
        losses = {}
        for i in range(2):
            loss = self.layer(batch["x"]).float().pow(2).mean()  # its gradient depends on the weights
            opts["model"].zero_grad()
            loss.backward()
            opts["model"].step()
            losses[f"loss{i}"] = loss.detach()
        return losses


def _two_updates(step, steps: int = 3):
    model = TwoUpdates()
    opts = model.configure_optimizers()
    batch = {"x": torch.randn(32, 16, generator=torch.Generator().manual_seed(1))}
    outputs = [step(model, batch, opts) for _ in range(steps)]
    return snapshot(model), outputs


def _in_region(cache: bool):
    def step(model, batch, opts):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache):
            return model.train_step(batch, opts)
    return step


def test_bf16_autocast_never_computes_at_stale_weights():
    """The engine's eager bf16 step (CPU autocast has CUDA's cast-cache semantics) equals the same steps with the
    cast cache off, bit for bit; one autocast region with the cache on over the whole step (the engine's old eager
    path) does not: its second forward reused the bf16 copy of the weights from before the first update."""
    def engine(model, batch, opts):
        eager = EagerStep(model.train_step, opts, "cpu", enabled=True)
        try:
            return eager(batch, opts)
        finally:
            eager.close()

    fresh, fresh_out = _two_updates(engine)
    uncached, uncached_out = _two_updates(_in_region(cache=False))
    stale, _ = _two_updates(_in_region(cache=True))
    assert_same_weights(fresh, uncached)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(fresh_out, uncached_out) for k in a)
    assert any(not torch.equal(fresh[k], stale[k]) for k in fresh), "the check cannot tell stale casts apart"


@pytest.mark.parametrize("cpu_precision", ["fp32", "bf16"])
def test_a_cpu_run_autocasts_to_bf16_only_when_cpu_precision_says_so(tiny_params, data, cpu_precision):
    """engine.precision is CUDA's (bf16 by default); a CPU run trains at engine.cpu_precision, fp32 by default, so
    the default CPU numbers stay what they were; bf16 runs every step under CPU autocast, and still learns."""
    model = tiny_vae(tiny_params)
    seen = []
    step = model.train_step
    model.train_step = lambda batch, opts: seen.append(torch.is_autocast_enabled("cpu")) or step(batch, opts)
    engine = dataclasses.replace(ENGINE, precision="bf16", cpu_precision=cpu_precision)
    config = dataclasses.replace(tiny_params.model("vae"), epochs=3)
    result = fit(model, data["train"], config=config, engine=engine, seed=3, progress=False)
    assert seen and set(seen) == {cpu_precision == "bf16"}
    losses = [r["train/loss"] for r in result.history if "train/loss" in r]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


@pytest.mark.parametrize(("section", "engine_says", "autocasts"), [
    ("bf16", "fp32", True), ("fp32", "bf16", False), ("engine", "bf16", True), ("engine", "fp32", False)])
def test_a_model_sections_cpu_precision_decides_its_cpu_training(tiny_params, data, section, engine_says, autocasts):
    """A model section's `cpu_precision` (bf16 | fp32) decides its CPU training whatever engine.cpu_precision says;
    `engine` follows the engine. On CUDA engine.precision stays the one setting."""
    model = tiny_vae(tiny_params)
    seen = []
    step = model.train_step
    model.train_step = lambda batch, opts: seen.append(torch.is_autocast_enabled("cpu")) or step(batch, opts)
    engine = dataclasses.replace(ENGINE, precision="bf16", cpu_precision=engine_says)
    config = dataclasses.replace(tiny_params.model("vae"), epochs=1, cpu_precision=section)
    fit(model, data["train"], config=config, engine=engine, seed=3, progress=False)
    assert seen and set(seen) == {autocasts}
    assert engine.precision_on("cpu", config) == ("bf16" if autocasts else "fp32")
    assert engine.precision_on("cpu") == engine_says  # no section (evaluation): the engine's
    assert engine.precision_on("cuda", config) == "bf16"
    assert dataclasses.replace(engine, precision="fp32").precision_on("cuda:0", config) == "fp32"


def test_a_disabled_eager_step_is_the_plain_train_step():
    """fp32, and every CPU run: no autocast and no hooks, so CPU numbers stay exactly what they were."""
    plain, _ = _two_updates(lambda model, batch, opts: model.train_step(batch, opts))
    model = TwoUpdates()
    opts = model.configure_optimizers()
    eager = EagerStep(model.train_step, opts, "cpu", enabled=False)
    assert eager.hooks == []
    batch = {"x": torch.randn(32, 16, generator=torch.Generator().manual_seed(1))}
    for _ in range(3):
        eager(batch, opts)
    assert_same_weights(plain, snapshot(model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_bf16_training_uses_fresh_casts(graphs):
    """On CUDA, fit's bf16 step (eager, or a captured graph) matches the same steps with the cast cache off."""
    device = torch.device("cuda")

    def reference(model, batch, opts):
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return model.train_step(batch, opts)

    if graphs:
        wrapped = {}

        def engine(model, batch, opts):
            if "step" not in wrapped:
                wrapped["step"] = GraphedStep(model.train_step, opts, device, "bf16")
            return wrapped["step"](batch, opts)
    else:
        def engine(model, batch, opts):
            return EagerStep(model.train_step, opts, "cuda", enabled=True)(batch, opts)

    def on_cuda(step, steps):
        model = TwoUpdates().to(device)
        opts = model.configure_optimizers()
        batch = {"x": torch.randn(32, 16, generator=torch.Generator().manual_seed(1)).to(device)}
        for _ in range(steps):
            step(model, batch, opts)
        torch.cuda.synchronize()
        return snapshot(model)

    steps = GraphedStep.WARMUP + 3
    got, want = on_cuda(engine, steps), on_cuda(reference, steps)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)  # a graph replays the same kernels


def test_burda_schedule_lasts_3_to_the_i_passes_per_stage_at_a_tenth_per_seven_stages():
    """Burda et al. 2016: stage i = 0..7 runs 3^i passes at lr * 10^(-i/7); 3280 passes, then stage 7 holds."""
    from genzoo.engine.training import _schedule, burda_stage

    stages = [burda_stage(e) for e in range(3300)]
    assert [stages.count(i) for i in range(7)] == [3**i for i in range(7)]
    assert stages.index(7) == sum(3**i for i in range(7)) and stages[-1] == 7  # 3^7 = 2187 passes from 1093 on
    weight = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=1e-3)
    schedule = _schedule(opt, "burda", total=100, steps_per_epoch=2)  # two steps per pass
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    expected = [1e-3 * 10 ** (-burda_stage(s // 2) / 7) for s in range(14)]
    assert lrs == pytest.approx(expected)
    assert lrs[1] == pytest.approx(1e-3) and lrs[2] == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert lrs[8] == pytest.approx(1e-3 * 10 ** (-2 / 7))  # pass 4 opens stage 2


def test_goodfellow_schedule_divides_the_lr_by_1_000004_every_update_down_to_1e_6():
    """The 2014 GAN code's lr: lr / 1.000004^t at update t, never below 1e-6. LambdaLR scales each param group's own
    lr, so the floor is 1e-6 whatever that lr is."""
    from genzoo.engine.training import _schedule

    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": 2e-6}], lr=0.1, momentum=0.5)
    schedule = _schedule(opt, "goodfellow", total=100, steps_per_epoch=2)
    lrs = []
    for _ in range(5):
        lrs.append([group["lr"] for group in opt.param_groups])
        opt.step()
        schedule.step()
    assert [a for a, _ in lrs] == pytest.approx([0.1 / 1.000004**t for t in range(5)], rel=1e-12)
    assert [b for _, b in lrs] == pytest.approx([2e-6 / 1.000004**t for t in range(5)], rel=1e-12)
    lr_at = [lambda t, f=f, base=base: base * f(t) for f, base in zip(schedule.lr_lambdas, schedule.base_lrs)]
    assert lr_at[0](165_000) == pytest.approx(0.1 * math.exp(-165_000 * math.log(1.000004)))  # 300 epochs of 550
    assert lr_at[0](3_000_000) == pytest.approx(1e-6) and lr_at[0](2_800_000) > 1e-6  # 0.1 reaches 1e-6 at ~2.88M
    assert lr_at[1](200_000) == pytest.approx(1e-6) and lr_at[1](100_000) > 1e-6  # 2e-6 halves in ~173k updates


def test_momentum_ramps_linearly_over_epochs_1_to_saturate_then_holds():
    """Epoch e (1-based) trains at 0.5 + 0.2 * clip((e - 1) / (250 - 1), 0, 1): the first epoch at 0.5, 0.7 from epoch
    250 on. Set on the optimizer before every step; a ramp loaded from another's state sets the same momentum."""
    from genzoo.engine.training import MomentumRamp

    def sgd():
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.5)

    opt = sgd()
    ramp = MomentumRamp(opt, 0.5, 0.7, saturate=250, steps_per_epoch=3)
    assert [ramp.momentum(s) for s in (0, 1, 2)] == [0.5] * 3  # epoch 1
    assert ramp.momentum(3) == pytest.approx(0.5 + 0.2 / 249)  # epoch 2
    assert ramp.momentum(249 * 3 - 1) < 0.7 and ramp.momentum(249 * 3) == pytest.approx(0.7)  # epoch 250
    assert ramp.momentum(10**7) == pytest.approx(0.7)
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["momentum"])
        opt.step()
        ramp.step()
    assert seen == [ramp.momentum(s) for s in range(7)] and seen[2] == 0.5 < seen[3] < seen[6]
    twin_opt = sgd()
    MomentumRamp(twin_opt, 0.5, 0.7, saturate=250, steps_per_epoch=3).load_state_dict(ramp.state_dict())
    assert twin_opt.param_groups[0]["momentum"] == opt.param_groups[0]["momentum"] == ramp.momentum(7)
    assert MomentumRamp(sgd(), 0.5, 0.7, saturate=1, steps_per_epoch=3).momentum(0) == 0.7  # saturated at once


def test_a_momentum_ramp_trains_eagerly_on_cuda_and_says_why(capsys):
    """A captured CUDA graph keeps SGD's momentum as it was at capture: with a ramp, fit() trains eagerly. The
    decision alone, on any machine (a torch.device("cuda") needs no GPU)."""
    from genzoo.engine.training import eager_reason, use_cuda_graph
    from genzoo.models import gan

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    engine = EngineParams(device="cuda")
    plain = gan.Config(optimizer="sgd")
    ramp = dataclasses.replace(plain, momentum_saturate_epoch=250)
    assert eager_reason(plain) is None and eager_reason(TrainConfig()) is None and "momentum" in eager_reason(ramp)
    assert use_cuda_graph(engine, cuda, plain, "gan") and capsys.readouterr().out == ""
    assert not use_cuda_graph(engine, cuda, ramp, "gan")
    assert capsys.readouterr().out.startswith("gan: training eagerly on CUDA, not as a CUDA graph: its SGD momentum")
    assert not use_cuda_graph(engine, cpu, ramp) and not use_cuda_graph(engine, cpu, plain)
    assert not use_cuda_graph(dataclasses.replace(engine, cuda_graphs=False), cuda, plain)
    assert capsys.readouterr().out == ""  # said only where a graph was on the table


def test_the_gan_paper_recipe_resumed_mid_ramp_equals_an_uninterrupted_run(tiny_params, tmp_path):
    """Simultaneous updates, SGD with the goodfellow lr and a momentum ramp over 3 epochs, U(±√3): stopped in epoch
    2 (mid-ramp, not at a checkpoint multiple) and resumed, the same weights as one run; the ramp is checkpointed."""
    config = dataclasses.replace(tiny_params.model("gan"), epochs=3, batch_size=8, optimizer="sgd", lr=0.05,
                                 lr_schedule="goodfellow", momentum_saturate_epoch=3, update="simultaneous",
                                 noise="uniform_sqrt3")
    data = images(48)  # 6 steps per epoch, 18 in all

    def train(checkpoint=None, stop_after=None):
        model = build_model("gan", config, SHAPE, 10)
        result = fit(model, data, config=config, engine=ENGINE, seed=3, checkpoint=checkpoint, fingerprint="f",
                     stop_after=stop_after, progress=False)
        return model, result

    straight, full = train()
    ckpt = tmp_path / "ckpt.pt"
    _, partial = train(ckpt, stop_after=9)
    assert partial.steps == 9
    assert torch.load(ckpt, weights_only=False)["schedules"][-2:] == [{"steps": 9}] * 2  # disc's and gen's ramps
    resumed, rest = train(ckpt)
    assert rest.resumed_from == 9 and rest.steps == full.steps == 18
    assert_same_weights(snapshot(straight), snapshot(resumed))
