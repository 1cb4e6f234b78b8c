"""genzoo.metrics.few_labels: the small classifier trained on the few labelled rows alone (the autoencoder's codes
against raw pixels, the Triple-GAN baseline's protocol)."""

from __future__ import annotations

import torch
from helpers import CLASSES

from genzoo.metrics.few_labels import few_label_accuracy


def toy_features(n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    features = 3 * torch.eye(CLASSES)[y].repeat(1, 2) + 0.3 * torch.randn(n, 2 * CLASSES, generator=gen)
    return features, y


def test_few_label_classifier_separates_a_toy_from_its_labelled_rows_only(small_classifier):
    features, y = toy_features()
    test_features, test_y = toy_features(500, seed=1)
    labelled = torch.arange(100, 1000, 9)[:100]  # 100 rows, 10 per class (9 and 10 are coprime)
    accuracy = few_label_accuracy(features, y, labelled, test_features, test_y, CLASSES)
    assert accuracy >= 0.99
    # The unlabelled rows are never read: scramble their labels and features, the result is the same.
    rest = torch.ones(1000, dtype=torch.bool)
    rest[labelled] = False
    y2, features2 = y.clone(), features.clone()
    y2[rest] = (y[rest] + 3) % CLASSES
    features2[rest] = torch.randn(int(rest.sum()), features.shape[1])
    assert few_label_accuracy(features2, y2, labelled, test_features, test_y, CLASSES) == accuracy
    # Seeded: the global RNG stream neither changes it nor is changed by it.
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert few_label_accuracy(features, y, labelled, test_features, test_y, CLASSES) == accuracy
    assert torch.equal(torch.get_rng_state(), state)
    # The labelled rows alone (labelled=None) give the same classifier.
    assert few_label_accuracy(features[labelled], y[labelled], None, test_features, test_y, CLASSES) == accuracy
