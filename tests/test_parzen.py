"""Known answers for the Parzen-window log-likelihood: the Gaussian convolution, chunking, choosing σ."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import gaussian

from genzoo.metrics.parzen import parzen_log_likelihood, parzen_score, select_sigma


def test_parzen_matches_the_gaussian_convolution():
    """A Gaussian KDE of N(0, I) samples is, in expectation, the density N(0, (1 + σ²) I)."""
    d, sigma = 2, 0.2
    samples, points = gaussian(20000, d, seed=0), gaussian(2000, d, seed=1)
    var = 1 + sigma**2
    analytic = -0.5 * points.double().square().sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)
    estimate = parzen_log_likelihood(samples, points, sigma, batch_size=4096)
    assert estimate.dtype == torch.float64 and estimate.shape == (2000,)
    assert abs(float(estimate.mean() - analytic.mean())) < 0.05


def test_parzen_chunking_does_not_change_the_result():
    """Same answer from 7 x 7 blocks as from one block, up to the float32 rounding of the distance matmul
    (relative 1e-6 of ~1600 nats here), which the block shape changes."""
    samples, points = torch.rand(300, 1, 28, 28), torch.rand(50, 1, 28, 28)
    torch.testing.assert_close(parzen_log_likelihood(samples, points, 0.2, batch_size=7),
                               parzen_log_likelihood(samples, points, 0.2, batch_size=100000), rtol=1e-5, atol=0)


def test_select_sigma_recovers_the_generating_width():
    """Validation points drawn around far-apart sample points with std τ: the likelihood over σ peaks at τ,
    the middle of the grid (a Gaussian's variance MLE with known mean)."""
    tau, grid = 0.3, torch.tensor([0.075, 0.15, 0.3, 0.6, 1.2])
    centres = torch.arange(10.0)[:, None] * 100 * torch.ones(1, 5)
    val = centres.repeat(200, 1) + tau * gaussian(2000, 5, seed=0)
    assert select_sigma(centres, val, grid) == pytest.approx(tau)
    means = [float(parzen_log_likelihood(centres, val, s).mean()) for s in grid]
    assert max(range(len(grid)), key=means.__getitem__) == 2
    score = parzen_score(centres, val, centres.repeat(50, 1) + tau * gaussian(500, 5, seed=1), grid)
    assert score["parzen_sigma"] == pytest.approx(tau) and score["parzen_sigmas_tried"] == 5
    assert 0 < score["parzen_stderr"] < 1
