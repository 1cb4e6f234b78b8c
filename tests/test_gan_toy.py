"""The 1-D GAN toy (stages/gan_toy.py): the mixture density, D*, V, C(G), the JSD identity, and the stage."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

from genzoo.stages.gan_toy import (MINUS_LOG4, ToyParams, c_of_g, gan_toy_stage, grid, histogram_density, jsd,
                                   mixture_bins, mixture_density, optimal_d, value)


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
    for check in written["max_d"].values():  # Proposition 1: no discriminator beats D*, so V(D, G) <= C(G)
        assert check["v_d_trained"] <= check["c_g"] + 1e-6 and check["v_d_gan"] <= check["c_g"] + 1e-6, check
    assert written["max_d"]["initial"]["gap_d_trained"] < written["max_d"]["initial"]["gap_d_gan"]
    grads = written["early_grad_norm_g"]["at_initial_g_trained_d"]
    assert grads["non_saturating"] > 100 * grads["minimax"]  # the minimax loss saturates against a confident D
    assert summary["steps"] == 300
    with open(tmp_path / "plots" / "gan_toy.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"step", "value", "c_g", "jsd", "minus_log4"} and rows[-1]["step"] == "300"
    assert (tmp_path / "figures" / "gan_toy" / "figure1.png").stat().st_size > 1000


def test_the_report_shows_the_early_training_ratio_beside_the_converged_d_probe(tmp_path):
    """Both saturation measurements the toy makes: G and D learning together early on, and D converged."""
    from genzoo.stages.report import _toy

    early = {"minimax": 0.864, "non_saturating": 0.928, "ratio_non_saturating_to_minimax": 1.074, "window": 50,
             "at_initial_g_trained_d": {"minimax": 0.00142, "non_saturating": 44.6}}
    check = {"gap_d_trained": 0.007, "gap_d_star": 0.0, "gap_d_gan": 0.035}
    (tmp_path / "gan_toy.json").write_text(json.dumps({
        "steps": 3000, "minus_log4": MINUS_LOG4, "initial": {"jsd": 0.693, "c_g": 0.0},
        "final": {"jsd": 0.019, "c_g": -1.348}, "max_d": {"final": check}, "early_grad_norm_g": early}))
    text = "\n".join(_toy(tmp_path))
    assert ("Early training (the first 50 steps, D learning beside G): mean ‖∇G‖ non-saturating 0.928 vs minimax "
            "0.864, ratio **1.07**.") in text
    assert "against a converged D: ‖∇G‖ minimax 0.00142, non-saturating 44.6." in text
    assert "Early training does not show it (ratio 1.07)" in text
