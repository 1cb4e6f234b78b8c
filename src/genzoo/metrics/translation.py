"""Scores for image-to-image translation (Pix2Pix, EnhanceNet, CycleGAN, StarGAN, SimGAN share them).

A translation is judged three ways against its held-out ground truth:
- label preserved: the frozen evaluator's accuracy on the outputs against the source digit's label;
- distance to the truth, per image then averaged: L1 (mean absolute pixel error in [0, 1]), PSNR in dB
  (data_range 1.0; a perfect image scores inf, so the mean is inf too) and SSIM (Gaussian 11×11 window, the
  torchmetrics defaults), both from torchmetrics.functional.image;
- realism of the whole set: FD-evaluator (Fréchet distance on the evaluator's penultimate features) between the
  outputs and the real truth images.
Everything runs batched on the images' device. PSNR is per image, then averaged (the usual SR convention), not
the PSNR of the pooled MSE.

Other model files import `translation_scores` and `translate_all`; add new helpers only at the end.
"""

from __future__ import annotations

import torch
from torch import nn

from genzoo.metrics.once import digest, once

BATCH = 500  # images per chunk


@torch.no_grad()
def translate_all(model: nn.Module, batch_dict: dict[str, torch.Tensor], batch_size: int = BATCH,
                  **kwargs) -> torch.Tensor:
    """model.translate over a whole split in chunks of `batch_size` rows -> (N, C, H, W) floats in [0, 1].

    Every tensor of `batch_dict` is sliced alike (rows = examples); extra keyword arguments go to translate
    (e.g. StarGAN's target labels, sliced by the caller). The model runs in eval mode; its mode is restored."""
    n = len(next(iter(batch_dict.values())))
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.translate({k: v[i:i + batch_size] for k, v in batch_dict.items()}, **kwargs)
                          for i in range(0, n, batch_size)]).float()
    finally:
        model.train(was_training)


@torch.no_grad()
def pixel_scores(outputs01: torch.Tensor, truth01: torch.Tensor, batch_size: int = BATCH) -> dict[str, float]:
    """{"l1", "psnr", "ssim"}: per-image means over (N, C, H, W) floats in [0, 1]."""
    # Here, not at the top: importing torchmetrics takes ~5 s, and the model registry imports this module.
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    l1, psnr, ssim = [], [], []
    for i in range(0, len(outputs01), batch_size):
        out = outputs01[i:i + batch_size].float().clamp(0, 1)
        ref = truth01[i:i + batch_size].float().to(out.device)
        l1.append((out - ref).abs().flatten(1).mean(1))  # (b,)
        psnr.append(peak_signal_noise_ratio(out, ref, data_range=1.0, reduction="none", dim=(1, 2, 3)))  # (b,)
        ssim.append(structural_similarity_index_measure(out, ref, data_range=1.0, reduction="none"))  # (b,)
    return {"l1": float(torch.cat(l1).mean()), "psnr": float(torch.cat(psnr).mean()),
            "ssim": float(torch.cat(ssim).mean())}


@torch.no_grad()
def translation_scores(outputs01: torch.Tensor, truth01: torch.Tensor, evaluator: nn.Module,
                       labels: torch.Tensor, real_features: torch.Tensor | None = None) -> dict[str, float]:
    """Score translations against their ground truth.

    outputs01, truth01: (N, C, H, W) floats in [0, 1], row i of one the counterpart of row i of the other;
    labels: (N,) the digit each row should still show; real_features: the evaluator features of the truth
    images if already computed (pass them to score several models against one reference).
    Returns {"accuracy", "l1", "psnr", "ssim", "fd"}. The evaluator takes 1-channel images. The outputs are
    scored as drawn (clamped to [0, 1]); the accuracy and the FD come from one evaluator pass over them. Scored
    once per process (genzoo.metrics.once): the EnhanceNet pair asks for the same bicubic baseline."""
    key = digest(outputs01, truth01, evaluator, labels, real_features)
    return dict(once("translation_scores", key, lambda: _translation_scores(outputs01, truth01, evaluator, labels,
                                                                            real_features)))


def _translation_scores(outputs01: torch.Tensor, truth01: torch.Tensor, evaluator: nn.Module, labels: torch.Tensor,
                        real_features: torch.Tensor | None) -> dict[str, float]:
    from genzoo.metrics.frechet import features, features_and_classes, frechet_distance  # torchmetrics: scoring only

    if real_features is None:
        real_features = features(evaluator, truth01)
    drawn = outputs01.float().clamp(0, 1)
    fake_features, classes = features_and_classes(evaluator, drawn, BATCH)
    scores = {"accuracy": float((classes == labels.to(classes.device)).float().mean())}
    scores.update(pixel_scores(outputs01, truth01))
    scores["fd"] = frechet_distance(real_features, fake_features)
    return scores
