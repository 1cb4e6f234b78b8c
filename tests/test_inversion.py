"""genzoo.models.inversion: gradient-descent inversion of a generator, walks in the latent space, and the grid of
walks between inverted real digits."""

from __future__ import annotations

import torch
from helpers import SHAPE, same, snapshot
from torch import nn

from genzoo.models.inversion import interpolate, interpolation_grid, invert
from genzoo.models.registry import build_model


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
    model = build_model("vae", tiny_params.model("vae"), SHAPE, 10).train()
    pairs = torch.rand(3, 2, *SHAPE)
    grid = interpolation_grid(model, pairs, steps=6).view(3, 8, *SHAPE)
    assert model.training, "the model's mode is restored"
    assert torch.equal(grid[:, 0], pairs[:, 0]) and torch.equal(grid[:, -1], pairs[:, 1])
    torch.testing.assert_close(grid[:, 1], model.reconstruct(pairs[:, 0]))
    torch.testing.assert_close(grid[:, -2], model.reconstruct(pairs[:, 1]))
