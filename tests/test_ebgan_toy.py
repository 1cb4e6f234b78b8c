"""EBGAN's losses and update order; the 1-D GAN toy's numerics (mixture density, D*, V, C(G), JSD) and stage."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

from genzoo.models import ebgan
from genzoo.toy import (MINUS_LOG4, ToyParams, c_of_g, gan_toy_stage, grid, histogram_density, jsd,
                        mixture_bins, mixture_density, optimal_d, value)

SHAPE = (1, 28, 28)


def tiny_ebgan(seed=0, **changes) -> ebgan.Model:
    config = ebgan.Config(epochs=1, batch_size=8, noise_dim=8, width=4, code_dim=6, **changes)
    torch.manual_seed(seed)
    return ebgan.Model(config, SHAPE, 10)


def images(n, seed=0):
    gen = torch.Generator().manual_seed(1000 + seed)
    return {"x": (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8), "y": torch.arange(n) % 10}


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------- EBGAN

def test_pull_away_orthogonal_codes_is_zero_identical_is_one():
    eye = torch.eye(5, 7) * torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0]).unsqueeze(1)  # orthogonal, any lengths
    assert ebgan.pull_away(eye).item() == pytest.approx(0.0, abs=1e-7)
    same_code = torch.randn(1, 7, generator=torch.Generator().manual_seed(0)).repeat(6, 1)
    assert ebgan.pull_away(same_code).item() == pytest.approx(1.0, abs=1e-6)
    assert ebgan.pull_away(same_code * torch.arange(1.0, 7.0).unsqueeze(1)).item() == pytest.approx(1.0, abs=1e-6)
    # two pairs at 60°: cos² = 1/4 within each pair, 0 across -> mean over the 12 ordered pairs = 4 · 1/4 / 12
    codes = torch.tensor([[1.0, 0, 0, 0], [0.5, math.sqrt(3) / 2, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.5, math.sqrt(3) / 2]])
    assert ebgan.pull_away(codes).item() == pytest.approx(1 / 12, abs=1e-6)


def test_margin_loss_is_zero_once_fake_energy_reaches_margin():
    real = torch.tensor([0.1, 0.3])
    fake = torch.tensor([1.0, 2.5], requires_grad=True)  # both >= m = 1
    loss = ebgan.d_loss(real, fake, margin=1.0)
    assert loss.item() == pytest.approx(0.2)  # only D(x)
    loss.backward()
    assert torch.equal(fake.grad, torch.zeros(2))  # D gets nothing from fakes above the margin
    low = torch.tensor([0.25, 2.0], requires_grad=True)
    loss = ebgan.d_loss(real, low, margin=1.0)
    assert loss.item() == pytest.approx(0.2 + 0.75 / 2)
    loss.backward()
    assert torch.allclose(low.grad, torch.tensor([-0.5, 0.0]))


def test_shapes_and_ranges():
    model = tiny_ebgan().eval()
    x = model.sample(5)
    assert x.shape == (5, *SHAPE) and x.min() >= 0 and x.max() <= 1
    z = model.noise(3)
    assert z.shape == (3, 8) and z.abs().max() <= 1 and model.noise_bounds == (-1.0, 1.0)
    assert model.generate(z).shape == (3, *SHAPE)
    energy, code = model.energy(x)
    assert energy.shape == (5,) and code.shape == (5, 6) and (energy >= 0).all()
    out = model.validate(images(6))
    assert set(out) == {"energy_real", "energy_fake", "loss_d", "pull_away"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    with pytest.raises(ValueError):
        ebgan.Model(model.config, (1, 32, 32), 10)


def test_d_updates_first_and_g_step_leaves_d_unchanged():
    model = tiny_ebgan().train()
    opts = model.configure_optimizers()
    calls, at_gen_step = [], {}
    for name, opt in opts.items():
        original = opt.step

        def step(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            if _name == "gen":
                at_gen_step["disc"] = state(model.disc)
                at_gen_step["disc_grads"] = {k: p.grad.clone() for k, p in model.disc.named_parameters()}
                at_gen_step["gen_grads"] = [p.grad for p in model.gen.parameters()]
            if _name == "disc":
                at_gen_step["disc_grads_after_d"] = {k: p.grad.clone() for k, p in model.disc.named_parameters()}
            return _original(*args, **kwargs)
        opt.step = step
    before_d, before_g = state(model.disc), state(model.gen)
    out = model.train_step(images(8), opts)
    assert calls == ["disc", "gen"]
    assert not same(before_d, state(model.disc))  # D learned ...
    assert same(at_gen_step["disc"], state(model.disc))  # ... before G's step, which left D alone
    assert same(at_gen_step["disc_grads"], at_gen_step["disc_grads_after_d"])  # G's loss sent D no gradient
    assert all(g is not None for g in at_gen_step["gen_grads"])
    assert not same(before_g, {k: v for k, v in model.gen.state_dict().items()})
    assert {"loss_d", "loss_g_adv", "pull_away", "grad_norm_g", "energy_real", "energy_fake"} <= set(out)


def test_pull_away_switch_changes_g_update_only_through_the_term():
    grads = {}
    for pt in (True, False):
        model = tiny_ebgan(pull_away=pt).train()
        opts = model.configure_optimizers()
        torch.manual_seed(3)
        out = model.train_step(images(8), opts)
        grads[pt] = out["grad_norm_g"]
        assert out["pull_away"] > 0
    assert not torch.equal(grads[True], grads[False])
    model = tiny_ebgan(pull_away=True, pt_weight=0.0).train()
    torch.manual_seed(3)
    assert torch.allclose(model.train_step(images(8), model.configure_optimizers())["grad_norm_g"], grads[False])


def test_decoder_has_no_batch_statistics():
    # regression: with batch-statistics BatchNorm in the decoder, a fake's reconstruction (the energy G descends)
    # depended on its batch mates; the decoder must rebuild each image from its own code alone
    for bn in (True, False):
        model = tiny_ebgan(disc_batchnorm=bn).train()
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.disc.dec.modules())
        codes = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.allclose(model.disc.dec(codes)[:2], model.disc.dec(codes[:2]), atol=1e-6)
    model = tiny_ebgan(disc_batchnorm=False).train()  # without the encoder's BatchNorm, energies are per-sample
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.energy(x)[0][:2], model.energy(x[:2])[0], atol=1e-6)


def test_default_margin_is_reachable_on_the_per_pixel_scale():
    # regression: m = 1 on the per-pixel MSE in [-1, 1] is the energy of a mid-grey image against a perfect
    # all-background reconstruction, ~20x a digit's reconstruction error: fakes never reached it, D's margin
    # term never saturated and G stayed grey noise on MNIST. The default must sit well below that junk energy.
    grey, background = torch.zeros(1, 784), -torch.ones(1, 784)  # in [-1, 1]
    junk = (grey - background).pow(2).mean().item()
    assert junk == pytest.approx(1.0)
    assert ebgan.Config().margin <= junk / 4
    # an energy at the default margin gives D nothing from the fake, one just below it does
    fake = torch.tensor([ebgan.Config().margin, ebgan.Config().margin * 0.5], requires_grad=True)
    ebgan.d_loss(torch.zeros(2), fake, ebgan.Config().margin).backward()
    assert torch.equal(fake.grad, torch.tensor([0.0, -0.5]))


# ---------------------------------------------------------------------------------------------- the 1-D toy

def toy_grid():
    cfg = ToyParams()
    centres, edges, dx = grid(cfg)
    return cfg, centres, edges, dx


def test_mixture_density_integrates_to_one():
    cfg, centres, edges, dx = toy_grid()
    assert (mixture_density(centres, cfg.means, cfg.stds, cfg.weights) * dx).sum().item() == pytest.approx(1, abs=1e-3)
    assert (mixture_bins(edges, cfg.means, cfg.stds, cfg.weights) * dx).sum().item() == pytest.approx(1, abs=1e-9)
    # unnormalized weights are normalized; the bins agree with the density at their centres
    bins = mixture_bins(edges, [0.0, 3.0], [1.0, 0.7], [2.0, 6.0])
    dens = mixture_density(centres, [0.0, 3.0], [1.0, 0.7], [0.25, 0.75])
    assert torch.allclose(bins, dens, atol=2e-3)
    samples = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) + 2
    assert (histogram_density(samples, edges) * dx).sum().item() == pytest.approx(1, abs=1e-9)


def test_optimal_d_maximizes_value():
    cfg, centres, edges, dx = toy_grid()
    p_data = mixture_bins(edges, cfg.means, cfg.stds, cfg.weights)
    p_g = mixture_bins(edges, [0.5, 3.0], [0.8, 1.0], [1.0, 1.0])
    d_star = optimal_d(p_data, p_g)
    best = value(d_star, p_data, p_g, dx)
    gen = torch.Generator().manual_seed(0)
    for scale in (0.3, 0.05, 0.01):
        logit = torch.logit(d_star.clamp(1e-9, 1 - 1e-9))
        d = torch.sigmoid(logit + scale * torch.randn(len(logit), generator=gen, dtype=torch.float64))
        assert value(d, p_data, p_g, dx) < best
    assert value(torch.full_like(d_star, 0.5), p_data, p_g, dx) < best
    assert best.item() == pytest.approx(c_of_g(p_data, p_g, dx).item())


def test_c_of_g_is_minus_log4_at_p_g_equals_p_data_and_jsd_identity():
    cfg, centres, edges, dx = toy_grid()
    p_data = mixture_bins(edges, cfg.means, cfg.stds, cfg.weights)
    assert c_of_g(p_data, p_data, dx).item() == pytest.approx(MINUS_LOG4, abs=1e-9)
    assert jsd(p_data, p_data, dx).item() == pytest.approx(0.0, abs=1e-12)
    assert value(optimal_d(p_data, p_data), p_data, p_data, dx).item() == pytest.approx(-math.log(4), abs=1e-9)
    for means in ([0.0], [2.0, 4.5], [-1.5, 6.0]):
        p_g = mixture_bins(edges, means, [0.5] * len(means), [1.0] * len(means))
        p_g = p_g / (p_g.sum() * dx)  # the identity needs both to integrate to 1 on the grid (no tail off it)
        j = jsd(p_data, p_g, dx).item()
        assert 0 < j <= math.log(2) + 1e-9
        assert c_of_g(p_data, p_g, dx).item() == pytest.approx(MINUS_LOG4 + 2 * j, abs=1e-9)
    far = mixture_bins(edges, [-1.8], [0.05], [1.0])  # disjoint from p_data: JSD = log 2, C(G) = 0
    assert jsd(p_data, far, dx).item() == pytest.approx(math.log(2), abs=1e-3)


def test_toy_stage_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_MLFLOW", "off")
    torch.set_num_threads(1)
    cfg = dataclasses.replace(ToyParams(), steps=300, snapshots=[0, 150, 300], d_converge_steps=200,
                              grid_points=120, log_every=50, early_steps=20, batch_size=128, lr=0.003)
    summary = gan_toy_stage(cfg, tmp_path)
    written = json.loads((tmp_path / "gan_toy.json").read_text())
    assert written["final"]["c_g"] < written["initial"]["c_g"] - 0.2  # C(G) decreased towards -log 4
    assert written["final"]["c_g"] >= MINUS_LOG4 - 1e-9 and written["final"]["jsd"] >= 0
    assert written["max_d"]["initial"]["gap_d_star"] < 1e-9
    assert written["max_d"]["initial"]["gap_d_trained"] < written["max_d"]["initial"]["gap_d_gan"]
    grads = written["early_grad_norm_g"]["at_initial_g_trained_d"]
    assert grads["non_saturating"] > 100 * grads["minimax"]  # the minimax loss saturates against a confident D
    assert summary["steps"] == 300
    with open(tmp_path / "plots" / "gan_toy.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"step", "value", "c_g", "jsd", "minus_log4"} and rows[-1]["step"] == "300"
    assert (tmp_path / "figures" / "gan_toy" / "figure1.png").stat().st_size > 1000
