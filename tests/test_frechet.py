"""Known answers for the Fréchet distance and KID on the evaluator's features (CPU, seeded)."""

from __future__ import annotations

import pytest
import torch
from helpers import gaussian

from genzoo.metrics.frechet import features, features_and_classes, frechet_distance, kernel_inception_distance
from genzoo.models.evaluator import Config as EvaluatorConfig
from genzoo.models.registry import build_model


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
    assert abs(same) < 0.02 and shifted > 4  # sampling noise of 2000 points vs. a unit mean shift (≈ 8)
    again, _ = kernel_inception_distance(real, gaussian(2000, 8, seed=1, shift=1.0), subsets=20)
    assert again == shifted  # seeded subsets: deterministic


def test_kid_clips_subset_size_to_the_smaller_set():
    real, fake = gaussian(300, 4, seed=0), gaussian(50, 4, seed=1)
    clipped = kernel_inception_distance(real, fake, subsets=3)  # subset_size 1000 by default: 50 fit
    assert clipped == kernel_inception_distance(real, fake, subsets=3, subset_size=50)
    assert clipped != kernel_inception_distance(real, fake, subsets=3, subset_size=40)
