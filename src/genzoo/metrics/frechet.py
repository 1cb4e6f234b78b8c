"""Fréchet distance ("FD-evaluator") and KID on the frozen evaluator's penultimate features.

Why features first, metric second: the same real features (train and test) are compared against every model,
so they are computed once with `features` and passed around as (N, F) matrices. torchmetrics still does the
math. `FrechetInceptionDistance` accepts any `feature` module; ours is an identity that announces
`num_features`, so the features we feed in *are* its activations: its float64 mean/covariance accumulation and
its matrix square root (`_compute_fid`) run unchanged, and no Inception weights are ever built or downloaded.
For KID the metric class draws subsets from the global RNG and buffers every feature with a warning, so we call
its public polynomial-kernel MMD (`poly_mmd`) on subsets from our own seeded generator instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from genzoo.metrics.once import digest, once


@torch.no_grad()
def features(evaluator: nn.Module, images01: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1] -> (N, F) evaluator features, batched, on the images' device.

    Eval mode matters: BatchNorm in train mode would make a sample's features depend on its batch-mates.
    The evaluator's previous mode is restored afterwards. Computed once per process for the same evaluator and
    images (genzoo.metrics.once): evaluate and the translation scores ask for the same real images' features."""
    key = digest(evaluator, images01, batch_size)
    return once("features", key, lambda: features_and_classes(evaluator, images01, batch_size)[0]).clone()


@torch.no_grad()
def features_and_classes(evaluator: nn.Module, images01: torch.Tensor, batch_size: int = 500
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """`features` and the evaluator's predicted class of each image, (N, F) and (N,), from one forward pass:
    the classes cost one Linear on the features, where `predict` would run the convolutions again."""
    was_training = evaluator.training
    evaluator.eval()
    try:
        feats = [evaluator.features(images01[i:i + batch_size].float()) for i in range(0, len(images01), batch_size)]
        return torch.cat(feats), torch.cat([evaluator.classes_of(f) for f in feats])
    finally:
        evaluator.train(was_training)


class _Precomputed(nn.Identity):
    """The 'feature network' handed to torchmetrics: features arrive already extracted."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # read by torchmetrics instead of probing with a dummy image


@torch.no_grad()
def frechet_distance(real_feats: torch.Tensor, fake_feats: torch.Tensor) -> float:
    """‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2(Σ_r Σ_f)^½) between Gaussians fitted to two (N, F) feature sets.

    torchmetrics accumulates the moments and takes the square root in float64 (float32 loses the small
    eigenvalues the trace term depends on), on the features' device."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real_feats.shape[1])).to(real_feats.device)
    metric.update(real_feats.double(), real=True)  # float64 in, so the result is not rounded back to float32
    metric.update(fake_feats.double().to(real_feats.device), real=False)
    return float(metric.compute())


@torch.no_grad()
def kernel_inception_distance(real_feats: torch.Tensor, fake_feats: torch.Tensor, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² with the cubic polynomial kernel (Bińkowski et al. 2018), mean and std over random subsets.

    Unlike FD it has an unbiased estimator, so it is comparable across sample sizes and ≈ 0 (possibly
    slightly negative) for two samples of one distribution. `subset_size` is clipped to the smaller set;
    subsets come from a generator seeded with `seed`, so the result is deterministic and leaves the global RNG
    alone. The kernel sums run in float64: MMD² is a small difference of large sums."""
    real, fake = real_feats.double(), fake_feats.double().to(real_feats.device)
    m = min(subset_size, len(real), len(fake))
    gen = torch.Generator().manual_seed(seed)
    scores = torch.stack([
        poly_mmd(real[torch.randperm(len(real), generator=gen)[:m].to(real.device)],
                 fake[torch.randperm(len(fake), generator=gen)[:m].to(real.device)])
        for _ in range(subsets)])
    return float(scores.mean()), float(scores.std(unbiased=False))
