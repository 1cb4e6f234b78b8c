"""genzoo.models.blocks: the shared pieces whose numbers every likelihood in the report rests on."""

from __future__ import annotations

import math

import pytest
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


def test_maxout_takes_the_max_over_each_units_pieces_for_any_leading_dims():
    layer = blocks.Maxout(3, units=2, pieces=4)
    x = torch.randn(5, 7, 3)
    pieces = layer.linear(x).view(5, 7, 2, 4)
    torch.testing.assert_close(layer(x), pieces.amax(-1))
    net = blocks.maxout_mlp([3, 6, 6, 2], pieces=2)
    assert [type(m).__name__ for m in net] == ["Maxout", "Maxout", "Linear"] and net(x).shape == (5, 7, 2)


def test_optimizer_names_adam_or_rmsprop_and_refuses_others():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(blocks.optimizer("adam", params, 1e-3), torch.optim.Adam)
    rms = blocks.optimizer("rmsprop", params, 1e-5, momentum=0.9)
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["momentum"] == 0.9 and rms.defaults["lr"] == 1e-5
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        blocks.optimizer("sgd", params, 1e-3)
