"""Test negative log-likelihood on the fixed binarized test set, batched on the device."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def test_nll(model: nn.Module, xb: torch.Tensor, k: int, batch_size: int) -> dict[str, float]:
    """Mean -log p(x) in nats (an upper bound when `model.log_likelihood` is a lower bound), its standard error,
    and bits per dimension. xb: (N, C, H, W) binary images."""
    log_p = torch.cat([model.log_likelihood(xb[i:i + batch_size].float(), k).double()
                       for i in range(0, len(xb), batch_size)])
    nll = -log_p
    dims = math.prod(xb.shape[1:])
    mean = float(nll.mean())
    return {"nll": mean, "nll_stderr": float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
            "bits_per_dim": mean / (dims * math.log(2)), "images": len(nll), "k": k}


@torch.no_grad()
def test_elbo(model: nn.Module, xb: torch.Tensor, batch_size: int) -> float:
    total = sum(float(model.elbo(xb[i:i + batch_size].float())["elbo"].double().sum())
                for i in range(0, len(xb), batch_size))
    return total / len(xb)
