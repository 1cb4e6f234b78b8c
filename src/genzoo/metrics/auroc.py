"""Area under the ROC curve of an anomaly score, the one-vs-rest metric of Ruff et al. 2018 ("Deep One-Class
Classification", ICML), which the AnoGAN stage reports per normal class: torchmetrics' `binary_auroc`.

torchmetrics reads predictions outside [0, 1] as logits and squashes them through a sigmoid, which would tie
every large anomaly score (AnoGAN's are sums over pixels, in the hundreds) at 1.0. The scores are therefore
min-max scaled to [0, 1] first, in float64: a monotone map, so the ranking, the ties and the AUROC are those of
the raw scores. With `thresholds=None` torchmetrics integrates the exact ROC curve, so ties count a half and a
constant score gets 0.5 (tests/test_auroc.py checks it against the Mann-Whitney statistic and hand-made cases).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc

from genzoo.engine.errors import GenzooError


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
    span = scores.max() - scores.min()
    scaled = (scores - scores.min()) / span if span > 0 else torch.zeros_like(scores)  # in [0, 1]: no sigmoid
    return float(binary_auroc(scaled, positive.long(), thresholds=None))
