"""genzoo.models.adversarial: the update order every adversarial model of the registry keeps (one test over the
registry, not a copy per model): D steps first, and nothing after D's last update changes D. G learns through D's
verdicts with D frozen (gradients pass through D, none reach its weights), so G's step leaves D's weights, buffers
and gradients exactly as D's own last step left them.

Which parameters are D's and which G's is read from each model's declaration, not named here: a model is
adversarial when `configure_optimizers()` has a "disc" optimizer; D is what that optimizer steps (whole
top-level modules of the model), G is what its "gen" optimizer steps.

Then the noise-to-image GANs' shared step (the loss switch, k D steps) and pictures, `frozen` and the nearest
training digit."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import CLASSES, SHAPE, grads, images, model_batch, record_steps, same, snapshot, tiny_model
from torch import nn

from genzoo.engine.training import seed_everything
from genzoo.models import adversarial as adv
from genzoo.models.inversion import interpolation_grid
from genzoo.models.registry import TRAINABLE


def k_d_then_g(config) -> list[str]:  # Goodfellow et al. 2014, Algorithm 1: k D updates, then one G update
    return ["disc"] * config.d_steps + ["gen"]


# Every adversarial registry model: the config changes its case runs with (k > 1 where the model has k, so that
# the test sees D update more than once, and the adversarial term on), and the optimizers one train_step steps,
# in order. A model with D whose name is missing here fails test_every_adversarial_model_is_covered.
CASES = {
    "gan": ({"d_steps": 2}, k_d_then_g),
    "dcgan": ({"d_steps": 2}, k_d_then_g),
    "ebgan": ({"d_steps": 2}, k_d_then_g),  # D is an autoencoder: its energy is the reconstruction error
    "aae": ({}, lambda c: ["ae", "disc", "gen"]),  # reconstruction phase, then D on codes, then the encoder as G
    "aae_2d": ({}, lambda c: ["ae", "disc", "gen"]),
    "pix2pix": ({}, lambda c: ["disc", "gen"]),
    "enhancenet": ({}, lambda c: ["disc", "gen"]),
    "cyclegan": ({}, lambda c: ["disc", "gen"]),  # one optimizer steps both Ds (D_A, D_B), one both Gs (G, F)
    "stargan": ({"d_steps": 2}, k_d_then_g),
    "stargan-wgan_gp": ({"d_steps": 2, "adv_loss": "wgan_gp"}, k_d_then_g),  # a critic with a gradient penalty
    "simgan": ({"d_steps": 2, "g_steps": 2, "pretrain_steps": 0},  # R's adversarial term on from the start
               lambda c: ["disc"] * c.d_steps + ["gen"] * c.g_steps),
    "stackgan": ({}, lambda c: ["text", "disc", "gen"]),  # the joint text embedding first, then D1+D2, G1+G2
    "triplegan": ({}, lambda c: ["disc", "cls", "gen"]),  # the classifier C between D and G, through a frozen D
}
EXCLUDED: dict[str, str] = {}  # registry name -> why its D is not checked here (none so far)


def registry_name(case: str) -> str:
    return case.split("-", 1)[0]


def discriminator(model: nn.Module, opts: dict) -> tuple[list[str], set[int]]:
    """The top-level modules of `model` that "disc" steps, and the ids of their parameters."""
    held = {id(p) for group in opts["disc"].param_groups for p in group["params"]}
    parts = [name for name, child in model.named_children()
             if any(True for _ in child.parameters()) and all(id(p) in held for p in child.parameters())]
    return parts, held


def part_state(model: nn.Module, parts: list[str]) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v for part in parts for k, v in snapshot(getattr(model, part)).items()}


def part_grads(model: nn.Module, parts: list[str]) -> dict[str, torch.Tensor | None]:
    return {f"{part}.{k}": v for part in parts for k, v in grads(getattr(model, part)).items()}


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_adversarial_model_is_covered(name, tiny_params):
    """A registry model has a discriminator iff its case is here (or it is excluded, with a reason). Read from its
    tiny-profile build: pix2pix_l1 and enhancenet_mse are their files' models without D."""
    opts = tiny_model(name, tiny_params).configure_optimizers()
    covered = {registry_name(case) for case in CASES} | set(EXCLUDED)
    assert ("disc" in opts) == (name in covered), (name, sorted(opts))
    if "disc" in opts:
        assert "gen" in opts, f"{name}: a discriminator without a generator's optimizer"


@pytest.mark.parametrize("case", CASES)
def test_d_steps_first_and_nothing_after_its_last_step_changes_d(case, tiny_params):
    changes, expected_order = CASES[case]
    name = registry_name(case)
    seed_everything(0)
    model = tiny_model(name, tiny_params, **changes).train()
    opts = model.configure_optimizers()
    d_parts, d_ids = discriminator(model, opts)
    # D is whole modules of the model, stepped by "disc" alone: no other optimizer can move it
    assert d_parts and {id(p) for part in d_parts for p in getattr(model, part).parameters()} == d_ids
    for other, opt in opts.items():
        if other != "disc":
            assert not d_ids & {id(p) for group in opt.param_groups for p in group["params"]}, other
    g_ids = {id(p) for group in opts["gen"].param_groups for p in group["params"]}
    g_names = [n for n, p in model.named_parameters() if id(p) in g_ids]

    def g_weights():
        params = dict(model.named_parameters())
        return {n: params[n].detach().clone() for n in g_names}

    log: list[dict] = []  # per step: which optimizer, D's state and gradients as it starts and ends, G's weights
    order = record_steps(
        opts,
        before=lambda opt: log.append({"opt": opt, "d_before": part_state(model, d_parts),
                                       "d_grads_before": part_grads(model, d_parts), "g_before": g_weights()}),
        after=lambda opt: log[-1].update(d_after=part_state(model, d_parts), d_grads_after=part_grads(model, d_parts),
                                         g_after=g_weights()))
    d_params = [p for part in d_parts for p in getattr(model, part).parameters()]
    d_runs: list[tuple[int, bool]] = []  # each time any module of D runs: steps done so far, whether D was frozen
    hooks = [module.register_forward_pre_hook(
        lambda *_: d_runs.append((len(order), not any(p.requires_grad for p in d_params))))
        for part in d_parts for module in getattr(model, part).modules()]
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}

    out = model.train_step(model_batch(model, n=8 * model.batches_per_step), opts)
    for hook in hooks:
        hook.remove()

    assert order == expected_order(model.config)
    d_steps = [i for i, o in enumerate(order) if o == "disc"]
    first_g, last_d = order.index("gen"), d_steps[-1]
    # D's steps: each one learns, and none moves G (they train on G's output detached)
    for i in d_steps:
        assert not same(log[i]["d_before"], log[i]["d_after"]), f"D's update {i} did nothing"
    assert same(log[d_steps[0]]["g_before"], log[last_d]["g_after"]), "G changed during D's updates"
    assert all(g is not None for g in log[last_d]["d_grads_after"].values())
    # after D's last step: every later step (G's; C's, between) and the end of train_step find D as it left it,
    # weights, buffers and gradients: no later loss sent D a gradient
    d_final, d_grads_final = log[last_d]["d_after"], log[last_d]["d_grads_after"]
    for row in log[last_d + 1:]:
        assert same(row["d_before"], d_final) and same(row["d_after"], d_final), f"{row['opt']}'s step changed D"
        assert same(row["d_grads_before"], d_grads_final), f"{row['opt']}'s loss sent D a gradient"
    assert same(part_state(model, d_parts), d_final) and same(part_grads(model, d_parts), d_grads_final)
    # G learns through D's verdicts, and every pass through D after D's last step runs with D frozen
    after_d = [frozen for steps_done, frozen in d_runs if steps_done > last_d]
    assert after_d, "G's loss never looked at D"
    assert all(after_d), "D ran unfrozen after its last update"
    assert not same(log[first_g]["g_before"], log[first_g]["g_after"]), "G's update did nothing"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == requires_grad, "left frozen after the step"
    assert all(torch.isfinite(v) for v in out.values())


# ---- the noise-to-image GANs' shared step and pictures (GeneratorDiscriminatorPair: gan, dcgan) ----------------

GANS = ["gan", "dcgan"]


def bars(n, seed=0):
    """Easy "real" images: black, with one bright vertical bar at a random column (a D learns them at once)."""
    gen = torch.Generator().manual_seed(2000 + seed)
    x = torch.zeros(n, *SHAPE, dtype=torch.uint8)
    x[torch.arange(n), 0, :, torch.randint(4, 24, (n,), generator=gen)] = 255
    return {"x": x, "y": torch.arange(n) % CLASSES}


@pytest.mark.parametrize("name", GANS)
def test_minimax_loss_saturates_where_the_non_saturating_one_does_not(name, tiny_params):
    """Once D rejects the fakes, log(1 - D(G(z))) is flat: its G gradient is far smaller (Goodfellow et al. §3)."""
    seed_everything(0)
    model = tiny_model(name, tiny_params, lr=1e-2).train()
    opts = model.configure_optimizers()
    for group in opts["gen"].param_groups:
        group["lr"] = 0.0  # train D alone against a fixed G, as early in training when G is poor
    for step in range(40):
        out = model.train_step(bars(32, seed=step), opts)
    assert out["d_fake"] < 0.2 and out["d_real"] > 0.8, "D should be winning by now"
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
    model = tiny_model(name, tiny_params, d_steps=k).train()
    assert model.batches_per_step == k
    opts = model.configure_optimizers()
    order = record_steps(opts)
    seen: list[torch.Tensor] = []
    model.disc.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    batch = images(k * m)
    model.train_step(batch, opts)
    assert order == ["disc"] * k + ["gen"]
    assert len(seen) == 2 * k + 1  # per D step: real, fake; then G's fakes
    for i in range(k):
        real = seen[2 * i].flatten(1)
        real01 = real if real.min() >= 0 else (real + 1) / 2  # the DCGAN's D works in [-1, 1]
        expected = batch["x"][i * m:(i + 1) * m].float().flatten(1) / 255
        torch.testing.assert_close(real01, expected)
    assert seen[-1].shape[0] == m


@pytest.mark.parametrize("name", GANS)
def test_gan_interpolation_grid_and_pictures(name, tiny_params):
    seed_everything(0)
    model = tiny_model(name, tiny_params)
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


# ---- the 2014 authors' code's update and prior (the gan's paper recipe) -----------------------------------------

def test_a_simultaneous_step_takes_both_gradients_at_the_weights_before_either_update(tiny_params):
    """update: simultaneous: one real minibatch and one G(z); D's gradient from its loss on the real digits and on
    G(z) detached, G's from -log D(G(z)) through D at its weights before its update; then both SGD steps. Checked
    against the same step by hand (dropout off, so D is deterministic; SGD's first step is p - lr * grad)."""
    lr = 0.05
    seed_everything(0)
    model = tiny_model("gan", tiny_params, update="simultaneous", optimizer="sgd", lr=lr, dropout_input=0.0,
                       dropout_hidden=0.0).train()
    ref = copy.deepcopy(model)
    batch = images(8)
    opts = model.configure_optimizers()
    order = record_steps(opts)
    torch.manual_seed(5)
    out = model.train_step(batch, opts)
    assert order == ["disc", "gen"] and all(torch.isfinite(v) for v in out.values())

    torch.manual_seed(5)
    fake = ref.generate(ref.noise(8))  # the step's one G(z)
    real_logits, fake_logits = ref.criticize(batch["x"].float() / 255), ref.criticize(fake.detach())
    loss_d = -0.5 * (F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())
    d_grads = torch.autograd.grad(loss_d, list(ref.disc.parameters()))
    loss_g = -F.logsigmoid(ref.criticize(fake)).mean()  # through D's weights before its update
    g_grads = torch.autograd.grad(loss_g, list(ref.gen.parameters()), retain_graph=True)
    for net, grads_ in (("disc", d_grads), ("gen", g_grads)):
        got = dict(getattr(model, net).named_parameters())
        for (name, p), g in zip(getattr(ref, net).named_parameters(), grads_):
            torch.testing.assert_close(got[name].detach(), p.detach() - lr * g, msg=f"{net}.{name}")
    torch.testing.assert_close(out["loss_d"], loss_d.detach())
    torch.testing.assert_close(out["loss_g_adv"], loss_g.detach())

    with torch.no_grad():  # the control: G's gradient through the updated D is another step (what the test tells apart)
        for p, g in zip(ref.disc.parameters(), d_grads):
            p -= lr * g
    late = torch.autograd.grad(-F.logsigmoid(ref.criticize(fake)).mean(), list(ref.gen.parameters()))
    assert not all(torch.allclose(a, b) for a, b in zip(late, g_grads))


def test_the_gan_refuses_a_simultaneous_update_of_k_steps_and_a_ramp_without_sgd(tiny_params):
    with pytest.raises(ValueError, match="simultaneous takes one minibatch per step"):
        tiny_model("gan", tiny_params, update="simultaneous", d_steps=2)
    with pytest.raises(ValueError, match="momentum_saturate_epoch ramps SGD's momentum; optimizer is adam"):
        tiny_model("gan", tiny_params, optimizer="adam", momentum_saturate_epoch=250)


def test_uniform_sqrt3_noise_is_unit_variance_inside_its_bounds(tiny_params):
    """z ~ U(-√3, √3): variance 1 (as N(0, I)); inversion clamps z to the box. U(-1, 1) draws as it did."""
    bound = math.sqrt(3)
    assert adv.noise_bounds("uniform_sqrt3") == (-bound, bound)
    assert adv.noise_bounds("uniform") == (-1.0, 1.0) and adv.noise_bounds("normal") is None
    torch.manual_seed(0)
    z = adv.draw_noise(20000, 10, "uniform_sqrt3", torch.device("cpu"))
    assert -bound <= z.min() and z.max() <= bound and z.abs().max() > 1.7
    assert z.var().item() == pytest.approx(1.0, abs=0.02) and z.mean().item() == pytest.approx(0.0, abs=0.02)
    torch.manual_seed(0)
    unit = adv.draw_noise(50, 4, "uniform", torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(unit, torch.rand(50, 4) * 2 - 1)
    model = tiny_model("gan", tiny_params, noise="uniform_sqrt3")
    assert model.noise_bounds == (-bound, bound) and model.noise(500).abs().max() > 1


# ---- the shared pieces ----------------------------------------------------------------------------------------

def test_frozen_passes_gradients_through_but_keeps_them_from_the_weights():
    d = nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    with adv.frozen(d):
        assert not d.weight.requires_grad and not d.bias.requires_grad
        d(x).sum().backward()
    assert d.weight.grad is None and d.bias.grad is None
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert d.weight.requires_grad and d.bias.requires_grad


def test_frozen_leaves_an_already_frozen_parameter_frozen():
    d = nn.Linear(3, 1)
    d.bias.requires_grad_(False)
    with adv.frozen(d):
        pass
    assert d.weight.requires_grad and not d.bias.requires_grad


def test_nearest_neighbours_chunked_equals_brute_force(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(50, *SHAPE, generator=gen) * 255).to(torch.uint8)
    queries = torch.rand(7, *SHAPE, generator=gen)
    brute = train[torch.cdist(queries.flatten(1), train.float().flatten(1) / 255).argmin(1)].float() / 255
    monkeypatch.setattr(adv, "NEAREST_CHUNK_ELEMENTS", 784 * 6)  # 6 training images per chunk: 9 chunks
    torch.testing.assert_close(adv.nearest_neighbours(queries, train), brute)
