"""The evaluator, the frozen classifier that scores the others: its features, predictions and random shift."""

from __future__ import annotations

import torch
from helpers import SHAPE, tiny_model

from genzoo.models.evaluator import random_shift


def test_evaluator_features_and_random_shift(tiny_params):
    model = tiny_model("evaluator", tiny_params).eval()
    x = torch.rand(5, *SHAPE)
    assert model.features(x).shape == (5, tiny_params.model("evaluator").features)
    assert model.predict(x).shape == (5,)
    torch.testing.assert_close(random_shift(x, 0.0), x, atol=1e-5, rtol=0)
    shifted = random_shift(x, 3.0)
    assert shifted.shape == x.shape and not torch.allclose(shifted, x)
