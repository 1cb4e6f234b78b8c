"""genzoo.metrics.auroc (torchmetrics' binary_auroc): hand-made scores with ties, large raw scores, and the
Mann-Whitney statistic from tie-averaged ranks (the hand-written implementation it replaced) as the reference."""

from __future__ import annotations

import pytest
import torch

from genzoo.engine.errors import GenzooError
from genzoo.metrics.auroc import auroc


def mann_whitney_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(anomaly scores above a normal image) + 0.5 P(tie), from tie-averaged 1-based ranks: exact with ties."""
    scores, positive = scores.double().flatten(), positive.bool().flatten()
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    ranks = (last - (counts.double() - 1) / 2)[inverse]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return (float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.mark.parametrize("scores, labels, expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # every anomaly above every normal image
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),  # reversed
    ([0.5, 0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1, 1], 0.5),  # all tied
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4: 3/4
    ([1, 2, 2, 3], [0, 0, 1, 1], 0.875),  # 2>1, 2=2 (a half), 3>1, 3>2: 3.5/4
    ([300, 100, 200], [1, 0, 0], 1.0),  # order of the rows does not matter
    ([100, 200, 200, 300], [0, 0, 1, 1], 0.875),  # raw scores above 1 are not squashed to ties by a sigmoid
    ([-5.0, 250.0, 250.0, 4000.0], [0, 0, 1, 1], 0.875),
])
def test_auroc_on_hand_made_scores(scores, labels, expected):
    assert auroc(torch.tensor(scores, dtype=torch.float), torch.tensor(labels).bool()) == pytest.approx(expected)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (80.0, 400.0)])
def test_auroc_equals_the_mann_whitney_statistic_with_many_ties(scale, shift):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (500,), generator=gen).float()  # heavy ties
    labels = torch.rand(500, generator=gen) < 0.3 + 0.1 * scores  # informative, not perfect
    expected = mann_whitney_auroc(scores, labels)
    assert auroc(scores * scale + shift, labels) == pytest.approx(expected, abs=1e-6)
    assert 0.6 < expected < 0.99


def test_auroc_refuses_one_sided_or_non_finite_input():
    with pytest.raises(GenzooError, match="both normal and anomalous"):
        auroc(torch.rand(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(GenzooError, match="NaN"):
        auroc(torch.tensor([0.1, float("nan")]), torch.tensor([False, True]))
    with pytest.raises(GenzooError, match="5 scores but 4 labels"):
        auroc(torch.rand(5), torch.ones(4, dtype=torch.bool))
