"""Attribute scores for the coloured `multidomain` digits: a fixed attribute classifier, and the scores of a
multi-domain translator (StarGAN; StackGAN reuses the classifier).

The classifier is tiny, with two heads, colour (red, green, blue) and stroke (thin, regular, thick), trained
on real multidomain digits that carry both labels (the val split), with everything fixed (width, steps,
learning rate, seed) so that a score depends on the images alone. Colour comes from each channel's share of
the ink (a linear head: exact for the set's pure-colour digits); stroke from a small CNN on the grey digit, so
it need not learn thickness once per colour (measured on 3000 real test digits, 600 steps: stroke 91.6 % for
one CNN on the RGB image, 95.5 % on grey). Stroke is not fully decidable from one image (MNIST's own pens
vary: an eroded thick-pen digit can look regular), so its real-data accuracy is the ceiling of any
"stroke reached" score. It runs on one thread on a CPU, like few_labels.fit_classifier (tiny matrices: extra
threads only wait for each other on a busy machine).

A translation's digit is read by the frozen MNIST evaluator, which takes one grey channel: `to_grey` takes the
maximum over the colour channels (a pure-colour digit keeps its intensity exactly; the score of real coloured
test digits through it is reported as the floor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.metrics.few_labels import one_thread
from genzoo.metrics.once import digest, once

STEPS = 1000
BATCH = 128
LR = 2e-3
WIDTH = 8
CHUNK = 1000  # images per forward pass when scoring


class AttributeClassifier(nn.Module):
    def __init__(self, width: int = WIDTH, colours: int = 3, strokes: int = 3):
        super().__init__()
        w = width
        self.colour = nn.Linear(3, colours)  # on each channel's share of the ink: the colour, whatever the stroke
        nn.init.zeros_(self.colour.weight)  # a linear head needs no symmetry breaking; from zero it is right at once
        self.stroke = nn.Sequential(  # on the grey digit: the stroke, whatever the colour (3x the data per colour)
            nn.Conv2d(1, w, 3, 1, 1), nn.ReLU(),  # (B, w, 28, 28)
            nn.Conv2d(w, w, 3, 2, 1), nn.ReLU(),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 49, 4 * w), nn.ReLU(), nn.Linear(4 * w, strokes))

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ink = x01.sum((2, 3))  # (B, 3)
        share = ink / ink.sum(1, keepdim=True).clamp(min=1e-6)  # (B, 3), sums to 1
        return self.colour(share * 10), self.stroke(to_grey(x01) * 2 - 1)  # (B, 3), (B, 3) logits


def fit_attribute_classifier(x_uint8: torch.Tensor, colour: torch.Tensor, stroke: torch.Tensor, seed: int = 0,
                             steps: int = STEPS) -> AttributeClassifier:
    """Train on (N, 3, 28, 28) uint8 digits with both labels; deterministic for a seed; returned in eval mode.
    Fitted once per process for the same digits, labels, seed and steps (genzoo.metrics.once): one evaluate
    process scores StarGAN and StackGAN on the same digits."""
    key = digest(x_uint8, colour, stroke, seed, steps, x_uint8.device.type)
    return once("attribute_classifier", key, lambda: _fit(x_uint8, colour, stroke, seed, steps))


def _fit(x_uint8: torch.Tensor, colour: torch.Tensor, stroke: torch.Tensor, seed: int,
         steps: int) -> AttributeClassifier:
    device = x_uint8.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), one_thread(device):
        torch.manual_seed(seed)
        model = AttributeClassifier().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        order = torch.Generator(device=device).manual_seed(seed)
        with torch.enable_grad():
            for _ in range(steps):
                idx = torch.randint(0, len(x_uint8), (min(BATCH, len(x_uint8)),), generator=order, device=device)
                logits_c, logits_s = model(x_uint8[idx].float() / 255)
                loss = F.cross_entropy(logits_c, colour[idx]) + F.cross_entropy(logits_s, stroke[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


@torch.no_grad()
def predict_attributes(model: nn.Module, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 28, 28) floats in [0, 1] -> (colour (N,), stroke (N,)) predicted labels, in chunks."""
    colours, strokes = [], []
    with one_thread(x01.device):
        for start in range(0, len(x01), CHUNK):
            logits_c, logits_s = model(x01[start:start + CHUNK])
            colours.append(logits_c.argmax(1))
            strokes.append(logits_s.argmax(1))
    return torch.cat(colours), torch.cat(strokes)


def to_grey(x01: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W): the brightest channel, what the MNIST evaluator reads."""
    return x01.amax(1, keepdim=True)


@torch.no_grad()
def digit_predictions(evaluator, x01: torch.Tensor) -> torch.Tensor:
    return torch.cat([evaluator.predict(to_grey(x01[i:i + CHUNK])) for i in range(0, len(x01), CHUNK)])


@torch.no_grad()
def score_translations(model, data: dict[str, dict[str, torch.Tensor]], evaluator, images: int = 0,
                       seed: int = 0, classifier_steps: int = STEPS) -> dict[str, float]:
    """A multi-domain translator (`model.all_targets(batch, joint)`) on the test split: for every target,
    "<target>_reached" = share whose asked attribute(s) the classifier sees, "<target>_digit" = share whose
    digit the evaluator still reads; the minima over the single-group targets, over the combinations done
    sequentially (colour, then stroke) and with one joint vector; and the real-data floors."""
    val, test = data["val"], data["test"]
    if images:
        test = {k: v[:images] for k, v in test.items()}
    classifier = fit_attribute_classifier(val["x"], val["colour"], val["stroke"], seed, classifier_steps)
    real01 = test["x"].float() / 255
    colour, stroke = predict_attributes(classifier, real01)
    scores = {"real_colour_accuracy": _mean(colour == test["colour"]),
              "real_stroke_accuracy": _mean(stroke == test["stroke"]),
              "real_digit_accuracy": _mean(digit_predictions(evaluator, real01) == test["y"]),
              "scored_images": float(len(real01))}
    names = {"colour": ("red", "green", "blue"), "stroke": ("thin", "regular", "thick")}
    for joint in (False, True):
        reached, kept = {}, {}
        for start in range(0, len(real01), CHUNK):
            batch = {"x": test["x"][start:start + CHUNK]}
            for name, out in model.all_targets(batch, joint).items():
                pred_c, pred_s = predict_attributes(classifier, out)
                parts = name.split("_")
                hit = torch.ones_like(pred_c, dtype=torch.bool)
                for part in parts:
                    group = "colour" if part in names["colour"] else "stroke"
                    hit &= (pred_c if group == "colour" else pred_s) == names[group].index(part)
                digit = digit_predictions(evaluator, out) == test["y"][start:start + CHUNK]
                reached[name] = reached.get(name, 0) + hit.sum()
                kept[name] = kept.get(name, 0) + digit.sum()
        n = len(real01)
        combos = [k for k in reached if "_" in k]
        if joint:
            scores["joint_combo_reached_min"] = min(float(reached[k]) / n for k in combos)
            scores["joint_combo_digit_min"] = min(float(kept[k]) / n for k in combos)
            continue
        for k, hits in reached.items():
            scores[f"{k}_reached"], scores[f"{k}_digit"] = float(hits) / n, float(kept[k]) / n
        singles = [k for k in reached if "_" not in k]
        scores["single_reached_min"] = min(scores[f"{k}_reached"] for k in singles)
        scores["single_digit_min"] = min(scores[f"{k}_digit"] for k in singles)
        scores["combo_reached_min"] = min(scores[f"{k}_reached"] for k in combos)
        scores["combo_digit_min"] = min(scores[f"{k}_digit"] for k in combos)
    return scores


def _mean(hits: torch.Tensor) -> float:
    return hits.float().mean().item()
