"""The test NLL (genzoo.metrics.likelihood) on a model with a known likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from genzoo.metrics.likelihood import test_nll as nll_of


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
