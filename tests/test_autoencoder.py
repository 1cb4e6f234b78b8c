"""The deep autoencoder: no sampler, reconstructions in the unit range, it learns, and its extra scores (test
reconstruction, few-label accuracy of its codes against raw pixels)."""

from __future__ import annotations

import torch
from helpers import CLASSES, SHAPE, band_images

from genzoo.engine.training import seed_everything
from genzoo.metrics.few_labels import few_label_accuracy
from genzoo.models import autoencoder


def build(seed: int = 0, **overrides) -> autoencoder.Model:
    config = autoencoder.Config(epochs=1, batch_size=32, **{"code_dim": 8, "hidden": [32], **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return autoencoder.Model(config, SHAPE, CLASSES)


def test_autoencoder_has_no_sampler_and_reconstructs_into_the_unit_range():
    model = build().eval()
    assert not model.samples and model.likelihood is None
    x01 = band_images(6)["x"].float() / 255
    out = model(x01)
    assert out.shape == (6, *SHAPE) and out.min() >= 0 and out.max() <= 1
    grids = model.pictures({"test": x01, "test_y": torch.arange(6), "train": band_images(6)["x"]})
    assert set(grids) == {"reconstructions"} and grids["reconstructions"][0].shape == (12, *SHAPE)
    assert torch.equal(grids["reconstructions"][0][0::2], x01)  # real, recon, real, recon, ...


def test_autoencoder_learns_to_reconstruct_a_small_batch():
    seed_everything(0)
    model = build(lr=3e-3).train()
    opt, data = model.configure_optimizers(), band_images(32)
    first = model.train_step(data, opt)["loss"]
    for _ in range(60):
        last = model.train_step(data, opt)["loss"]
    assert last < 0.6 * first


def test_autoencoder_extra_scores_on_tiny_data(small_classifier):
    seed_everything(0)
    model = build().eval()
    train, test = band_images(200, seed=0), band_images(50, seed=1)
    labelled = torch.arange(100, 150)  # 50 labels, 5 per class
    scores = model.extra_scores({"train": train, "val": test, "test": test, "labelled": labelled}, None)
    assert set(scores) == {"recon_bce", "recon_mse", "codes_accuracy", "pixels_accuracy", "labelled"}
    assert 0 < scores["recon_bce"] < 784 * 2 and 0 < scores["recon_mse"] < 1 and scores["labelled"] == 50
    # the codes' accuracy is the classifier's on the codes of the labelled rows (not on their pixels)
    labels = train["y"][labelled]
    with torch.no_grad():
        codes, test_codes = model.codes(train["x"][labelled]), model.codes(test["x"])
    assert scores["codes_accuracy"] == few_label_accuracy(codes, labels, None, test_codes, test["y"], CLASSES)
    assert scores["pixels_accuracy"] >= 0.9  # the classes are bands of bright rows: trivially separable
    # Only the labelled training rows count: relabel all the others and nothing moves.
    train["y"][:100] = 0
    assert model.extra_scores({"train": train, "val": test, "test": test, "labelled": labelled}, None) == scores
