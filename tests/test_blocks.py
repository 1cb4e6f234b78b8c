"""genzoo.models.blocks: the shared pieces whose numbers every likelihood in the report rests on."""

from __future__ import annotations

import math

import torch

from genzoo.models import blocks


def _log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v))


def test_iwae_bound_at_k2_matches_a_hand_computation(monkeypatch):
    """One pixel, one latent, two fixed posterior draws: the bound is log((w1 + w2) / 2), so it pins the -log k
    term (without it the value is log 2 higher) and each of log p(x|z), log p(z), log q(z|x)."""
    eps = torch.tensor([[[0.5]], [[-1.0]]])  # (k, B, L)
    monkeypatch.setattr(blocks.torch, "randn", lambda *shape, **kw: eps.clone())
    mean, logvar = torch.tensor([[0.2]]), torch.tensor([[math.log(0.25)]])  # q = N(0.2, 0.5^2)
    x = torch.tensor([[1.0]])  # the pixel is on
    bound = blocks.iwae_bound(x, mean, logvar, k=2, decode=lambda z: z)  # the logit is z itself

    log_2pi = math.log(2 * math.pi)
    log_w = []
    for e in (0.5, -1.0):
        z = 0.2 + 0.5 * e
        log_px = _log_sigmoid(z)  # Bernoulli(sigmoid(z)) of x = 1
        log_prior = -0.5 * (z * z + log_2pi)
        log_q = -0.5 * (e * e + log_2pi + math.log(0.25))
        log_w.append(log_px + log_prior - log_q)
    expected = math.log((math.exp(log_w[0]) + math.exp(log_w[1])) / 2)
    assert bound.shape == (1,)
    assert abs(float(bound) - expected) < 1e-6, (float(bound), expected)
    assert abs(float(bound) - (expected + math.log(2))) > 0.5  # a bound without -log k would fail the line above
