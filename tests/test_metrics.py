"""Metrics on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from genzoo.metrics.likelihood import test_nll as nll_of
from genzoo.metrics.modes import class_histogram, mode_coverage


def test_one_class_samples_hit_one_mode_with_maximal_kl():
    histogram = class_histogram(torch.full((1000,), 3), 10)
    assert histogram[3] == 1 and histogram.sum() == 1
    coverage = mode_coverage(histogram)
    assert coverage["classes_hit"] == 1
    assert coverage["kl_to_uniform"] == pytest.approx(math.log(10))


def test_balanced_samples_cover_every_mode_with_zero_kl():
    coverage = mode_coverage(class_histogram(torch.arange(1000) % 10, 10))
    assert coverage == {"classes_hit": 10, "kl_to_uniform": pytest.approx(0.0, abs=1e-12)}


def test_a_class_under_one_percent_is_not_hit():
    predictions = torch.cat([torch.zeros(995), torch.ones(5)])
    assert mode_coverage(class_histogram(predictions, 10))["classes_hit"] == 1


class KnownLikelihood(torch.nn.Module):
    """log p(x) = -(number of ones) * log 2, as for independent fair coins."""

    def log_likelihood(self, xb, k):
        return -xb.flatten(1).sum(1) * math.log(2)


def test_nll_in_nats_and_bits_per_dim():
    xb = torch.ones(10, 1, 4, 4)
    scores = nll_of(KnownLikelihood(), xb, k=1, batch_size=3)
    assert scores["nll"] == pytest.approx(16 * math.log(2))
    assert scores["bits_per_dim"] == pytest.approx(1.0)  # one fair coin per pixel = one bit
    assert scores["images"] == 10 and scores["nll_stderr"] == pytest.approx(0.0)
