"""Known answers for the sample-quality metrics: FD, KID, precision/recall and the Parzen window (CPU, seeded)."""

from __future__ import annotations

import math

import pytest
import torch

from genzoo.metrics.frechet import features, features_and_classes, frechet_distance, kernel_inception_distance
from genzoo.metrics.parzen import parzen_log_likelihood, parzen_score, select_sigma
from genzoo.metrics.precision_recall import precision_recall
from genzoo.models import build_model
from genzoo.models.evaluator import Config as EvaluatorConfig


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


def test_features_shape_device_and_batch_independence():
    evaluator = build_model("evaluator", EvaluatorConfig(width=4, features=16), (1, 28, 28), 10).train()
    images = torch.rand(37, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    feats = features(evaluator, images, batch_size=8)
    assert feats.shape == (37, 16) and feats.dtype == torch.float32 and feats.device == images.device
    assert not feats.requires_grad
    assert evaluator.training  # the caller's mode is restored
    torch.testing.assert_close(feats, features(evaluator, images, batch_size=100))  # eval-mode BatchNorm


def test_features_and_classes_give_exactly_features_and_predict_from_one_pass():
    """evaluate's mode histogram comes from the FD features' own forward pass: the very classes predict gives."""
    torch.manual_seed(0)
    evaluator = build_model("evaluator", EvaluatorConfig(width=4, features=16), (1, 28, 28), 10)
    for p in evaluator.parameters():  # untrained weights would give one class to every image
        p.data.normal_(0, 0.5)
    images = torch.rand(37, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    feats, classes = features_and_classes(evaluator.train(), images, batch_size=8)
    assert evaluator.training and classes.shape == (37,) and len(classes.unique()) > 1
    assert torch.equal(feats, features(evaluator, images, batch_size=8))
    evaluator.eval()
    assert torch.equal(classes, torch.cat([evaluator.predict(images[i:i + 8]) for i in range(0, 37, 8)]))


def test_frechet_distance_zero_for_identical_sets_and_grows_with_shift():
    real = gaussian(2000, 8, seed=0)
    assert abs(frechet_distance(real, real)) < 1e-3
    fds = [frechet_distance(real, gaussian(2000, 8, seed=1, shift=s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds) and fds[0] < fds[1]


def test_frechet_distance_matches_closed_form_for_shifted_identity_gaussians():
    d, shift = 8, 1.0
    fd = frechet_distance(gaussian(20000, d, seed=0), gaussian(20000, d, seed=1, shift=shift))
    assert fd == pytest.approx(shift**2 * d, rel=0.1)


def test_kid_of_a_set_with_itself_is_the_unbiased_estimator_closed_form():
    """Unbiased MMD² of a set against itself is not 0: k(x, x) is dropped from the within-set means but kept in
    the cross mean, giving -2(mean diag K - mean off-diag K)/(m - 1) < 0. With subsets of all m points every
    subset gives that value exactly, so it checks the kernel, the estimator and the subset clipping at once."""
    x = gaussian(300, 8, seed=0).double()
    m, kernel = len(x), (x @ x.T / x.shape[1] + 1) ** 3
    expected = 2 * (kernel.sum() - kernel.trace()) / (m * (m - 1)) - 2 * kernel.sum() / m**2
    mean, std = kernel_inception_distance(x, x, subsets=5, subset_size=1000)
    assert mean == pytest.approx(float(expected), rel=1e-9) and std < 1e-9
    assert -0.1 < mean < 0


def test_kid_near_zero_for_one_distribution_positive_under_shift():
    real = gaussian(2000, 8, seed=0)
    same, _ = kernel_inception_distance(real, gaussian(2000, 8, seed=1), subsets=20, subset_size=1000)
    shifted, _ = kernel_inception_distance(real, gaussian(2000, 8, seed=1, shift=1.0), subsets=20)
    assert abs(same) < 0.02 < 4 < shifted  # sampling noise of 2000 points vs. a unit mean shift (≈ 8)
    again, _ = kernel_inception_distance(real, gaussian(2000, 8, seed=1, shift=1.0), subsets=20)
    assert again == shifted  # seeded subsets: deterministic


def test_kid_clips_subset_size_to_the_smaller_set():
    mean, _ = kernel_inception_distance(gaussian(300, 4, seed=0), gaussian(50, 4, seed=1), subsets=3)
    assert math.isfinite(mean)


def test_precision_recall_identical_and_disjoint():
    real = gaussian(500, 4, seed=0)
    assert precision_recall(real, real, batch_size=64) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(real, gaussian(500, 4, seed=1, shift=100.0)) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_detects_a_dropped_mode():
    """Real data has two far-apart blobs; the fake covers only one: realistic (precision ≈ 1), half the data
    (recall ≈ 0.5)."""
    offset = torch.zeros(4)
    offset[0] = 20.0
    real = torch.cat([gaussian(1000, 4, seed=0) - offset, gaussian(1000, 4, seed=1) + offset])
    fake = gaussian(1000, 4, seed=2) - offset
    scores = precision_recall(real, fake, batch_size=300)
    # Two samples of one blob already miss each other's k = 3 manifolds on ~5 % of points (the tails).
    assert scores["precision"] > 0.9
    assert 0.42 < scores["recall"] <= 0.5  # the second blob's 1000 real points are never recalled


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
