"""genzoo.metrics.translation: the scores every image-to-image model reports (accuracy, L1, PSNR, SSIM, FD) and
translating a split in chunks."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import paired_batch, superres_batch, tiny_evaluator

from genzoo.metrics.translation import translate_all, translation_scores
from genzoo.models import pix2pix


def test_translation_scores_of_identical_images():
    ev, batch = tiny_evaluator(), superres_batch(64)
    truth = batch["b"].float() / 255
    scores = translation_scores(truth.clone(), truth, ev, batch["y"])
    own_accuracy = float((ev.predict(truth) == batch["y"]).float().mean())
    assert scores["l1"] == 0 and scores["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert scores["psnr"] == math.inf or scores["psnr"] > 60
    assert scores["accuracy"] == pytest.approx(own_accuracy)
    worse = translation_scores((truth + 0.1).clamp(0, 1), truth, ev, batch["y"])
    assert worse["l1"] > 0.05 and worse["ssim"] < 1 and 15 < worse["psnr"] < 30
    darker = translation_scores(truth * 0.3, truth, ev, batch["y"])["fd"]  # the tiny random evaluator's scale
    assert darker > 0 and abs(scores["fd"]) < 1e-2 * darker


def test_psnr_is_per_image_mean_and_l1_known():
    truth = torch.zeros(2, 1, 28, 28)
    out = truth.clone()
    out[0] += 0.1  # image 0: MSE 0.01 -> 20 dB; image 1: MSE 0.0001 -> 40 dB
    out[1] += 0.01
    scores = translation_scores(out, truth, tiny_evaluator(), torch.zeros(2, dtype=torch.long))
    assert scores["psnr"] == pytest.approx(30.0, abs=1e-3)
    assert scores["l1"] == pytest.approx(0.055, abs=1e-6)


def test_translate_all_matches_one_big_batch_and_restores_mode():
    torch.manual_seed(0)
    model, batch = pix2pix.Model(pix2pix.Config(gen_width=8, disc_width=8)), paired_batch(7)
    model.train()
    chunked = translate_all(model, batch, batch_size=3)
    assert model.training
    model.eval()
    assert torch.allclose(chunked, model.translate(batch), atol=1e-6)


def test_a_second_model_asking_for_the_same_measurement_gets_the_first_answer_without_another_pass(monkeypatch):
    """evaluate scores the EnhanceNet pair against one bicubic baseline and the Pix2Pix pair against one set of
    truth digits: the evaluator runs once for the same content; new content (or a changed evaluator) runs again."""
    from genzoo.metrics import once

    monkeypatch.setattr(once, "_TAKEN", {})
    ev, batch = tiny_evaluator(), superres_batch(64)
    truth = batch["b"].float() / 255
    outputs = (truth * 0.5).clone()
    passes = []
    real_features = ev.features
    monkeypatch.setattr(ev, "features", lambda x: passes.append(len(x)) or real_features(x))
    first = translation_scores(outputs, truth, ev, batch["y"])
    assert len(passes) == 2  # the truth's features, and one pass over the outputs for both the accuracy and the FD
    assert translation_scores(outputs.clone(), truth.clone(), ev, batch["y"].clone()) == first
    assert len(passes) == 2
    other = translation_scores(outputs * 0.5, truth, ev, batch["y"])  # new outputs, the same truth: one pass
    assert len(passes) == 3 and other["fd"] != first["fd"]
    with torch.no_grad():
        next(ev.parameters()).add_(0.1)  # the evaluator changed: everything is measured again
    translation_scores(outputs, truth, ev, batch["y"])
    assert len(passes) == 5


def test_the_accuracy_from_the_shared_pass_is_the_evaluators_own_prediction():
    ev, batch = tiny_evaluator(seed=3), superres_batch(64)
    outputs = batch["b"].float() / 255 * 0.8
    expected = float((ev.predict(outputs) == batch["y"]).float().mean())
    assert translation_scores(outputs, batch["b"].float() / 255, ev, batch["y"])["accuracy"] == expected
