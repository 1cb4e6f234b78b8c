"""Gaussian Parzen-window log-likelihood, the GAN 2014 protocol (Goodfellow et al.; Breuleux et al. 2011).

A model that can only sample is scored by fitting an isotropic Gaussian kernel density to its samples and
evaluating real test digits under it: log p(x) = logsumexp_i(−‖x − s_i‖² / 2σ²) − log N − D/2·log(2πσ²).
σ is picked on the validation split, the score reported on test with its standard error. The estimate is known
to be poor in 784-D (Theis et al. 2016); it is kept because the paper anchors (GAN 225 ± 2) are stated in it.

Cost is one (points x samples) distance matrix, built block by block from ‖x‖² + ‖s‖² − 2x·s (a matmul, float32)
so 10k x 10k x 784 differences are never materialized; the logsumexp runs and accumulates in float64, because
the log-densities are hundreds of nats and exp of their differences is what counts.
"""

from __future__ import annotations

import math

import torch

# logspace(-1, 0, 10), the grid of the GAN paper's parzen_ll.py: pixels lie in [0, 1], so σ = 1 blurs a kernel
# over the whole intensity range, while below 0.1 each kernel is a near-delta whose log-likelihood is set by the
# single nearest sample. The 2014 MNIST optimum (σ ≈ 0.2) sits inside, away from both ends.
DEFAULT_SIGMAS = torch.logspace(-1, 0, 10, dtype=torch.float64)


def _log_likelihoods(samples: torch.Tensor, points: torch.Tensor, sigmas: torch.Tensor,
                     batch_size: int) -> torch.Tensor:
    """(S, M) log p(points) for every σ in `sigmas` at once: the distance blocks are shared across σ."""
    samples, points = samples.flatten(1).float(), points.flatten(1).float().to(samples.device)
    sigmas = sigmas.to(samples.device, torch.float64)
    n, d = samples.shape
    scale = (-0.5 / sigmas**2)[:, None, None]  # (S, 1, 1)
    out = []
    for i in range(0, len(points), batch_size):
        x = points[i:i + batch_size]
        x_sq = x.square().sum(1, keepdim=True)
        acc = torch.full((len(sigmas), len(x)), -math.inf, dtype=torch.float64, device=samples.device)
        for j in range(0, n, batch_size):
            s = samples[j:j + batch_size]
            dist_sq = (x_sq + s.square().sum(1) - 2 * x @ s.T).clamp(min=0)  # (Bx, Bs), float32
            acc = torch.logaddexp(acc, torch.logsumexp(scale * dist_sq.double(), dim=2))
        out.append(acc)
    log_norm = math.log(n) + 0.5 * d * torch.log(2 * math.pi * sigmas**2)
    return torch.cat(out, dim=1) - log_norm[:, None]


@torch.no_grad()
def parzen_log_likelihood(samples: torch.Tensor, points: torch.Tensor, sigma: float,
                          batch_size: int = 1000) -> torch.Tensor:
    """(M,) float64 log-density of each point under the Parzen window of bandwidth σ fitted on (N, ...) samples.

    Blocks are batch_size x batch_size (points x samples); the result does not depend on batch_size."""
    return _log_likelihoods(samples, points, torch.tensor([float(sigma)]), batch_size)[0]


@torch.no_grad()
def select_sigma(samples: torch.Tensor, val_points: torch.Tensor, sigmas: torch.Tensor | None = None,
                 batch_size: int = 1000) -> float:
    """The σ of the grid with the highest mean validation log-likelihood (all σ scored from one pass)."""
    if len(val_points) == 0:
        raise ValueError("select_sigma needs validation points (is the val split empty?)")
    sigmas = DEFAULT_SIGMAS if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    mean_ll = _log_likelihoods(samples, val_points, sigmas, batch_size).mean(dim=1)
    return float(sigmas[int(mean_ll.argmax())])


@torch.no_grad()
def parzen_score(samples: torch.Tensor, val_points: torch.Tensor, test_points: torch.Tensor,
                 sigmas: torch.Tensor | None = None, batch_size: int = 1000) -> dict[str, float]:
    """σ chosen on validation points, mean test log-likelihood in nats (higher is better) and its standard error.

    Points and samples must share one scale (MNIST: floats in [0, 1]), flattened or not."""
    sigmas = DEFAULT_SIGMAS if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    sigma = select_sigma(samples, val_points, sigmas, batch_size)
    ll = parzen_log_likelihood(samples, test_points, sigma, batch_size)
    stderr = float(ll.std() / math.sqrt(len(ll))) if len(ll) > 1 else 0.0
    return {"parzen_ll": float(ll.mean()), "parzen_stderr": stderr, "parzen_sigma": sigma,
            "parzen_sigmas_tried": len(sigmas)}
