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
