"""Few-label accuracy: one small, fixed classifier trained on the shared labelled subset only (100 MNIST labels).

It is the yardstick for representations: the autoencoder's codes against raw pixels, and later Triple-GAN's
classifier against "the same C trained on the 100 labels alone". Everything about it is fixed (width, steps,
learning rate, weight decay, seed) so that only the input features differ between two scores.

Choices: a one-hidden-layer MLP trained full batch with AdamW (100 points: no minibatch noise needed). Features
are centred per dimension and divided by *one* number, their root-mean-square deviation on the labelled rows:
codes of any scale then meet the same optimizer as pixels, while no dimension is reweighted (per-dimension
scaling would blow up the rarely-lit border pixels: 70 % instead of 75 % on raw MNIST pixels). It runs in
float64: a fit this small costs nothing, and in float32 the confident softmax of 100 memorized points
underflows into denormal numbers, which make CPU arithmetic many times slower. For the same reason of size it
runs on one CPU thread: its matrices are tiny, and on a busy machine every multi-threaded op waits for a
descheduled thread (measured: 15 s instead of 1 s for a 150-step fit).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 256
STEPS = 500
LR = 1e-3
WEIGHT_DECAY = 1e-2  # decoupled (AdamW): shrinks weights toward 0 whatever the feature scale


def fit_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0) -> nn.Module:
    """Train the fixed classifier on (N, D) features and (N,) labels; returns it in eval mode, features in,
    logits out (standardization included)."""
    features = features.flatten(1).double()
    with torch.random.fork_rng(devices=[features.device] if features.device.type == "cuda" else []):
        torch.manual_seed(seed)
        mean = features.mean(0)  # (D,)
        scale = (features - mean).pow(2).mean().sqrt().clamp(min=1e-8)  # one number for all D dimensions
        model = Classifier(mean, scale, HIDDEN, num_classes).to(features.device, torch.float64)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        with torch.enable_grad(), one_thread(features.device):
            for _ in range(STEPS):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(features), labels).backward()
                opt.step()
    return model.eval()


@contextlib.contextmanager
def one_thread(device: torch.device):
    """Tiny fits on a CPU run on one thread (see the module docstring); other devices are left alone."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Classifier(nn.Module):
    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, hidden: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("scale", scale)  # ()
        self.net = nn.Sequential(nn.Linear(len(mean), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features.flatten(1).double() - self.mean) / self.scale)  # (B, num_classes) logits


@torch.no_grad()
def few_label_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, labelled: torch.Tensor | None,
                       test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                       seed: int = 0) -> float:
    """Test accuracy of the fixed classifier trained on the rows `labelled` of the training features only.

    `train_features` may be the whole training split or just its labelled rows in the order of `labelled`
    (pass `labelled=None` then); the other rows and their labels are never read."""
    if labelled is not None:
        train_features, train_labels = train_features[labelled], train_labels[labelled]
    model = fit_classifier(train_features, train_labels, num_classes, seed)
    predictions = torch.cat([model(test_features[i:i + 4096]).argmax(1) for i in range(0, len(test_features), 4096)])
    return float((predictions == test_labels).double().mean())
