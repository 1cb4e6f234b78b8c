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


@torch.no_grad()
def sample_modes(model, evaluator, n: int, num_classes: int) -> dict[str, float]:
    """The evaluator's view of `n` fresh samples: logged during training, so mode collapse is seen as it happens."""
    histogram = class_histogram(evaluator.predict(model.sample(n)), num_classes)
    return {**{f"modes/{k}": float(v) for k, v in mode_coverage(histogram).items()},
            **{f"modes/class_{c}": float(h) for c, h in enumerate(histogram)}}
