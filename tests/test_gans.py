"""The GANs' update order (D first, then G through a frozen D), the loss switch, k D-steps, and latent inversion."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from genzoo.data.loading import load_split
from genzoo.inversion import interpolate, interpolation_grid, invert
from genzoo.models import adversarial as adv
from genzoo.models import build_model
from genzoo.params import EngineParams
from genzoo.training import GraphedStep, fit, seed_everything

SHAPE, CLASSES = (1, 28, 28), 10
GANS = ["gan", "dcgan"]


def tiny_gan(name, tiny_params, seed=0, **changes):
    config = dataclasses.replace(tiny_params.model(name), **changes)
    return build_model(name, config, SHAPE, CLASSES, seed)


def images(n, seed=0):
    gen = torch.Generator().manual_seed(1000 + seed)
    return {"x": (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8), "y": torch.arange(n) % CLASSES}


def bars(n, seed=0):
    """Easy "real" images: black, with one bright vertical bar at a random column (a D learns them at once)."""
    gen = torch.Generator().manual_seed(2000 + seed)
    x = torch.zeros(n, *SHAPE, dtype=torch.uint8)
    x[torch.arange(n), 0, :, torch.randint(4, 24, (n,), generator=gen)] = 255
    return {"x": x, "y": torch.arange(n) % CLASSES}


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Weights and buffers (a BatchNorm's running statistics are state too)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    return {k: None if p.grad is None else p.grad.clone() for k, p in module.named_parameters()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (a[k] is None and b[k] is None) or (a[k] is not None and b[k] is not None and torch.equal(a[k], b[k]))
        for k in a)


def record_steps(model: nn.Module, opts: dict) -> list[dict]:
    """Wrap each optimizer's step: log its name, D's gradients as it starts, and both nets' weights after it."""
    log: list[dict] = []
    for name, opt in opts.items():
        def step(*args, _name=name, _step=opt.step, **kwargs):
            d_grads = grads(model.disc)
            result = _step(*args, **kwargs)
            log.append({"opt": _name, "d_grads": d_grads, "disc": snapshot(model.disc), "gen": weights(model.gen)})
            return result
        opt.step = step
    return log


@pytest.mark.parametrize("name", GANS)
def test_discriminator_steps_first_then_the_generator_step_leaves_it_unchanged(name, tiny_params):
    seed_everything(0)
    model = tiny_gan(name, tiny_params, d_steps=2).train()
    opts = model.configure_optimizers()
    gen_before = weights(model.gen)  # (G's BatchNorm statistics do move whenever G runs in train mode)
    log = record_steps(model, opts)
    model.train_step(images(16), opts)
    assert [row["opt"] for row in log] == ["disc", "disc", "gen"]
    assert all(same(row["gen"], gen_before) for row in log[:2]), "G changed during D's updates"
    assert not same(log[0]["disc"], log[1]["disc"]), "the second D update did nothing"
    assert same(log[2]["disc"], log[1]["disc"]), "G's step changed D (weights or BatchNorm buffers)"
    assert same(snapshot(model.disc), log[1]["disc"])
    # D receives no gradient from the generator step: its .grad is exactly what its own last step left
    assert same(log[2]["d_grads"], grads(model.disc))
    last_d_grads = log[1]["d_grads"]
    assert all(g is not None for g in last_d_grads.values())
    assert same(log[2]["d_grads"], last_d_grads)
    assert all(p.requires_grad for p in model.parameters()), "D must be unfrozen after the step"
    assert not same(weights(model.gen), gen_before)


def test_frozen_passes_gradients_through_but_keeps_them_from_the_weights():
    d = nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    with adv.frozen(d):
        d(x).sum().backward()
    assert d.weight.grad is None and d.bias.grad is None
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert d.weight.requires_grad and d.bias.requires_grad


@pytest.mark.parametrize("name", GANS)
def test_minimax_loss_saturates_where_the_non_saturating_one_does_not(name, tiny_params):
    """Once D rejects the fakes, log(1 - D(G(z))) is flat: its G gradient is far smaller (Goodfellow et al. §3)."""
    seed_everything(0)
    model = tiny_gan(name, tiny_params, lr=1e-2).train()
    opts = model.configure_optimizers()
    for group in opts["gen"].param_groups:
        group["lr"] = 0.0  # train D alone against a fixed G, as early in training when G is poor
    for step in range(40):
        out = model.train_step(bars(32, seed=step), opts)
    assert out["d_fake"] < 0.2 < 0.8 < out["d_real"], "D should be winning by now"
    results = {}
    for kind in ("non_saturating", "minimax"):
        twin = copy.deepcopy(model)
        twin.config = dataclasses.replace(model.config, g_loss=kind)
        twin_opts = twin.configure_optimizers()
        twin_opts["disc"].load_state_dict(opts["disc"].state_dict())
        torch.manual_seed(1)
        results[kind] = twin.train_step(bars(32, seed=99), twin_opts)
    ns, mm = results["non_saturating"], results["minimax"]
    assert ns["loss_d"] == mm["loss_d"]  # the same D step: only G's loss differs
    assert mm["loss_g_adv"] < 0 < ns["loss_g_adv"]  # log(1 - D) <= 0 <= -log D
    assert mm["grad_norm_g"] < 0.5 * ns["grad_norm_g"]


@pytest.mark.parametrize("name", GANS)
def test_k_discriminator_steps_consume_k_minibatches(name, tiny_params):
    seed_everything(0)
    k, m = 3, 4
    model = tiny_gan(name, tiny_params, d_steps=k).train()
    assert model.batches_per_step == k
    opts = model.configure_optimizers()
    log = record_steps(model, opts)
    seen: list[torch.Tensor] = []
    model.disc.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    batch = images(k * m)
    model.train_step(batch, opts)
    assert [row["opt"] for row in log] == ["disc"] * k + ["gen"]
    assert len(seen) == 2 * k + 1  # per D step: real, fake; then G's fakes
    for i in range(k):
        real = seen[2 * i].flatten(1)
        real01 = real if real.min() >= 0 else (real + 1) / 2  # the DCGAN's D works in [-1, 1]
        expected = batch["x"][i * m:(i + 1) * m].float().flatten(1) / 255
        torch.testing.assert_close(real01, expected)
    assert seen[-1].shape[0] == m


@pytest.mark.parametrize("name", GANS)
def test_the_engine_hands_each_step_k_batches(name, tiny_params, tiny_processed):
    train = load_split(tiny_processed, "train")
    config = dataclasses.replace(tiny_params.model(name), d_steps=2, batch_size=16, epochs=1)
    model = build_model(name, config, SHAPE, CLASSES)
    rows: list[int] = []
    step = model.train_step
    model.train_step = lambda batch, opts: rows.append(len(batch["x"])) or step(batch, opts)
    result = fit(model, train, config=config, engine=EngineParams(device="cpu", log_every=2), seed=0, progress=False)
    assert rows == [32] * (len(train["x"]) // 32) and result.steps == len(rows)


def test_invert_recovers_codes_a_generator_can_reach():
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 28 * 28), nn.Sigmoid())
    before_weights = snapshot(gen)

    def generate(z):
        return gen(z).view(-1, *SHAPE)

    z_true = torch.rand(6, 4) * 2 - 1
    with torch.no_grad():
        targets = generate(z_true)
    z0 = torch.rand(6, 4) * 2 - 1
    before = (generate(z0) - targets).pow(2).flatten(1).mean(1).detach()
    z, error = invert(generate, targets, z0, steps=300, lr=0.05, clamp=(-1.0, 1.0))
    assert z.shape == z0.shape and error.shape == (6,) and not z.requires_grad
    assert (error < 0.05 * before).all(), (before, error)
    assert z.min() >= -1 and z.max() <= 1
    assert same(snapshot(gen), before_weights) and all(p.grad is None for p in gen.parameters())
    z_again, error_again = invert(generate, targets, z0, steps=300, lr=0.05, clamp=(-1.0, 1.0))
    assert torch.equal(z, z_again) and torch.equal(error, error_again)  # deterministic


def test_interpolation_ends_at_its_inputs():
    z_a, z_b = torch.randn(3, 5), torch.randn(3, 5)
    walk = interpolate(z_a, z_b, 7)
    assert walk.shape == (3, 7, 5)
    assert torch.equal(walk[:, 0], z_a) and torch.equal(walk[:, -1], z_b)
    torch.testing.assert_close(walk[:, 3], (z_a + z_b) / 2)


def test_vae_interpolation_grid_walks_between_encoder_means(tiny_params):
    model = build_model("vae", tiny_params.model("vae"), SHAPE, CLASSES).train()
    pairs = torch.rand(3, 2, *SHAPE)
    grid = interpolation_grid(model, pairs, steps=6).view(3, 8, *SHAPE)
    assert model.training, "the model's mode is restored"
    assert torch.equal(grid[:, 0], pairs[:, 0]) and torch.equal(grid[:, -1], pairs[:, 1])
    torch.testing.assert_close(grid[:, 1], model.reconstruct(pairs[:, 0]))
    torch.testing.assert_close(grid[:, -2], model.reconstruct(pairs[:, 1]))


@pytest.mark.parametrize("name", GANS)
def test_gan_interpolation_grid_and_pictures(name, tiny_params):
    seed_everything(0)
    model = tiny_gan(name, tiny_params)
    model.train_step(images(8), model.configure_optimizers())
    pairs = torch.rand(2, 2, *SHAPE)
    grid = interpolation_grid(model, pairs, steps=4, inversion_steps=20)
    assert grid.shape == (2 * 6, *SHAPE) and grid.min() >= 0 and grid.max() <= 1
    train = images(40, seed=5)["x"]
    grids = model.train().pictures({"test": torch.rand(100, *SHAPE), "train": train})
    assert model.training
    assert set(grids) == {"samples", "nearest", "interpolation", "inverted_interpolation"}
    assert grids["samples"][0].shape == (100, *SHAPE)
    assert grids["interpolation"][0].shape == (80, *SHAPE)
    assert grids["inverted_interpolation"][0].shape == (40, *SHAPE)
    neighbours = grids["nearest"][0][1::2]  # (sample, nearest training image) pairs
    train01 = train.float() / 255
    assert all((train01 == img).flatten(1).all(1).any() for img in neighbours)


def test_nearest_neighbours_chunked_equals_brute_force(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(50, *SHAPE, generator=gen) * 255).to(torch.uint8)
    queries = torch.rand(7, *SHAPE, generator=gen)
    brute = train[torch.cdist(queries.flatten(1), train.float().flatten(1) / 255).argmin(1)].float() / 255
    monkeypatch.setattr(adv, "NEAREST_CHUNK_ELEMENTS", 784 * 6)  # 6 training images per chunk: 9 chunks
    torch.testing.assert_close(adv.nearest_neighbours(queries, train), brute)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", GANS)
def test_train_step_is_captured_as_one_cuda_graph(name, tiny_params):
    seed_everything(0)
    device = torch.device("cuda")
    model = tiny_gan(name, tiny_params, d_steps=2).to(device).train()
    opts = model.configure_optimizers()
    step = GraphedStep(model.train_step, opts, device, "bf16")
    norms = []
    for i in range(GraphedStep.WARMUP + 4):
        out = step({k: v.to(device) for k, v in images(16, seed=i).items()}, opts)
        norms.append(out["grad_norm_g"].clone())
    assert isinstance(step.graph, torch.cuda.CUDAGraph), "capture failed: the step fell back to eager"
    assert all(torch.isfinite(v) for v in out.values())
    assert len({round(float(n), 6) for n in norms[-3:]}) == 3, "replays must draw fresh noise and batches"


def test_saturation_stage_compares_both_losses_from_the_same_start(tiny_params, tiny_processed, tmp_path):
    import csv
    import json

    from genzoo.saturation import saturation_stage

    summary = saturation_stage(tiny_params, tiny_processed, tmp_path)
    rows = list(csv.DictReader((tmp_path / "plots" / "gan_saturation.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, tiny_params.saturation.steps + 1))
    assert set(rows[0]) == {"step", "non_saturating", "minimax"}
    # the same weights, batch and noise at step 1, where D(G(z)) is about 1/2: both losses give about the same
    # gradient there (d/dl of -log σ(l) and of log(1 - σ(l)) are -(1 - σ) and -σ); they part ways as D learns
    first = {k: float(v) for k, v in rows[0].items() if k != "step"}
    assert first["minimax"] == pytest.approx(first["non_saturating"], rel=0.2)
    written = json.loads((tmp_path / "gan_saturation.json").read_text())
    assert written["early_grad_norm_g"] == pytest.approx(summary["early_grad_norm_g"])
    assert all(v > 0 for v in written["early_grad_norm_g"].values())


def test_bench_times_a_gan_with_k_batches_per_step(tiny_params, tiny_processed, tmp_path):
    import dataclasses
    import json

    from genzoo.bench import bench_stage

    tiny_params.models["gan"] = dataclasses.replace(tiny_params.model("gan"), d_steps=2)
    (row,) = bench_stage("gan", tiny_params, tiny_processed, steps=3, batch_sizes=[8], out=tmp_path / "b.json")
    assert row["batch_size"] == 8 and row["steps_per_s"] > 0 and not row["cuda_graphs"]
    train_images = row["train_images"]  # one step consumes 2 batches of 8: an epoch is train_images / 16 steps
    assert row["seconds_per_epoch"] == pytest.approx(train_images // 16 / row["steps_per_s"], rel=0.02)
    assert row["seconds_per_60k_images"] == pytest.approx(60000 / 16 / row["steps_per_s"], rel=0.02)
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["model"] == "gan"
