"""Area under the ROC curve of an anomaly score, the one-vs-rest metric of Ruff et al. 2018 ("Deep One-Class
Classification", ICML), which the AnoGAN stage reports per normal class.

AUROC = P(score of a random anomaly > score of a random normal image) + 0.5 · P(tie): the Mann-Whitney U
statistic over n_pos · n_neg pairs, computed from tie-averaged ranks in O(N log N) (no threshold sweep, exact
with ties, so a constant score gets 0.5 and no pair is lost or counted twice).
"""

from __future__ import annotations

import torch

from genzoo.engine.errors import GenzooError


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks (N,) of `values` (N,), tied values sharing the mean of the ranks they span."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of each distinct value's last occurrence
    mean_rank = last - (counts.double() - 1) / 2  # (first + last) / 2 with first = last - count + 1
    return mean_rank[inverse]


def auroc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    """AUROC of `scores` (N,) (higher = more anomalous) against boolean labels (N,) (True = anomaly)."""
    scores = scores.detach().flatten().double().cpu()
    positive = is_anomaly.detach().flatten().bool().cpu()
    if scores.shape != positive.shape:
        raise GenzooError(f"auroc: {len(scores)} scores but {len(positive)} labels")
    if not torch.isfinite(scores).all():
        raise GenzooError("auroc: the scores hold NaN or infinite values")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise GenzooError(f"auroc: needs both normal and anomalous examples (got {n_neg} normal, {n_pos} anomalous)")
    rank_sum = float(average_ranks(scores)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
