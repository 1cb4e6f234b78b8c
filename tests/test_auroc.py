"""genzoo.metrics.auroc: the area under the ROC curve on hand-made scores, with ties, against torchmetrics."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional import auroc as tm_auroc

from genzoo.engine.errors import GenzooError
from genzoo.metrics.auroc import auroc


@pytest.mark.parametrize("scores, labels, expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # every anomaly above every normal image
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),  # reversed
    ([0.5, 0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1, 1], 0.5),  # all tied
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4: 3/4
    ([1, 2, 2, 3], [0, 0, 1, 1], 0.875),  # 2>1, 2=2 (a half), 3>1, 3>2: 3.5/4
    ([3, 1, 2], [1, 0, 0], 1.0),  # order of the rows does not matter
])
def test_auroc_on_hand_made_scores(scores, labels, expected):
    assert auroc(torch.tensor(scores, dtype=torch.float), torch.tensor(labels).bool()) == pytest.approx(expected)


def test_auroc_matches_torchmetrics_with_many_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (500,), generator=gen).float()  # heavy ties
    labels = torch.rand(500, generator=gen) < 0.3 + 0.1 * scores  # informative, not perfect
    expected = float(tm_auroc(scores, labels.long(), task="binary"))
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-6)
    assert 0.6 < expected < 0.99


def test_auroc_refuses_one_sided_or_non_finite_input():
    with pytest.raises(GenzooError, match="both normal and anomalous"):
        auroc(torch.rand(5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(GenzooError, match="NaN"):
        auroc(torch.tensor([0.1, float("nan")]), torch.tensor([False, True]))
