"""Mode coverage (genzoo.metrics.modes) on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

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
