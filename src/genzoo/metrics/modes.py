"""Mode coverage: which classes a generator produces, as the frozen evaluator sees them."""

from __future__ import annotations

import torch


def class_histogram(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Fraction of samples assigned to each class (sums to 1)."""
    counts = torch.bincount(predictions.flatten().long(), minlength=num_classes).double()
    return counts / counts.sum()


def mode_coverage(histogram: torch.Tensor, threshold: float = 0.01) -> dict[str, float]:
    """Classes hit by at least `threshold` of the samples, and KL(histogram || uniform) in nats: 0 when
    balanced, log(K) when every sample falls in one class."""
    k = len(histogram)
    nonzero = histogram[histogram > 0]
    kl = float((nonzero * (nonzero * k).log()).sum())
    return {"classes_hit": int((histogram >= threshold).sum()), "kl_to_uniform": kl}
