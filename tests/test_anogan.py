"""The anogan stage: the generalized inversion (AnoGAN's loss and the old MSE), per-image independence of batched
inversion, one-class data, and the whole stage on the tiny data set. (Its AUROC: tests/test_auroc.py.)"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json

import pytest
import torch

from genzoo.data.loading import load_split, seeded_subset
from genzoo.engine.training import fit
from genzoo.models.inversion import invert, mse
from genzoo.models.registry import build_model, load_model
from genzoo.stages.anogan import (AnoganLoss, AnoganParams, Features, anogan_scores, anogan_stage, frozen_features,
                                  initial_codes, one_class, one_class_config)

SHAPE, CLASSES = (1, 28, 28), 10


# ---------------------------------------------------------------- inversion

def tiny_dcgan(tiny_params, seed=0):
    """A tiny DCGAN after one training step (BatchNorm statistics no longer at their initial values), eval mode."""
    torch.manual_seed(seed)
    model = build_model("dcgan", tiny_params.model("dcgan"), SHAPE, CLASSES, seed)
    x = (torch.rand(16, *SHAPE) * 255).to(torch.uint8)
    model.train_step({"x": x}, model.configure_optimizers())
    return model.eval()


def reference(n=64, seed=1):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_frozen_features_equal_batch_statistics_on_the_reference_set_itself(tiny_params):
    model = tiny_dcgan(tiny_params)
    ref = reference(64)
    features = frozen_features(model, ref, chunk=24)  # statistics accumulated over uneven chunks
    with torch.no_grad():
        batch_stat = model.disc[:-1](ref * 2 - 1)  # D as trained: BatchNorm on the batch in hand
        torch.testing.assert_close(features(ref), batch_stat, atol=1e-5, rtol=1e-4)
        other = reference(8, seed=2)
        assert not torch.allclose(features(other), model.disc[:-1](other * 2 - 1), atol=1e-3)
    assert all(not p.requires_grad for p in features.parameters())
    assert all(p.requires_grad for p in model.disc.parameters()), "the model's own D is untouched"


def test_inversion_lowers_the_anogan_loss_and_the_old_mse(tiny_params):
    model = tiny_dcgan(tiny_params)
    features = frozen_features(model, reference())
    loss = AnoganLoss(features, lam=0.1)
    with torch.no_grad():
        targets = model.generate(initial_codes(model, 6, seed=5))  # reachable targets
    z0 = initial_codes(model, 6, seed=9)
    with torch.no_grad():
        before = loss(model.generate(z0), targets)
    z, after = invert(model.generate, targets, z0, steps=60, lr=0.05, clamp=model.noise_bounds, loss=loss)
    assert after.shape == (6,) and (after < 0.7 * before).all(), (before, after)
    assert z.min() >= -1 and z.max() <= 1
    torch.testing.assert_close(after, loss(model.generate(z), targets).detach())
    # the loss is the paper's: (1 - λ) L1 residual + λ L1 feature distance, per image
    with torch.no_grad():
        g = model.generate(z)
        by_hand = 0.9 * (targets - g).abs().sum((1, 2, 3)) + 0.1 * (features(targets) - features(g)).abs().sum(1)
    torch.testing.assert_close(after, by_hand)
    # the old call (no loss given) still minimizes the MSE, and is the same as passing `mse`
    z_mse, err = invert(model.generate, targets, z0, steps=60, lr=0.05, clamp=model.noise_bounds)
    assert (err < 0.7 * mse(model.generate(z0), targets).detach()).all()
    z_explicit, err_explicit = invert(model.generate, targets, z0, steps=60, lr=0.05, clamp=model.noise_bounds,
                                      loss=mse)
    assert torch.equal(z_mse, z_explicit) and torch.equal(err, err_explicit)


def test_batched_inversion_gives_each_image_the_code_it_gets_alone(tiny_params):
    model = tiny_dcgan(tiny_params)
    images = reference(6, seed=3)
    kwargs = dict(steps=15, lr=0.05, lam=0.1, seed=7)
    features = frozen_features(model, reference())
    z_all, s_all = anogan_scores(model, features, images, chunk=6, **kwargs)
    z_one, s_one = anogan_scores(model, features, images, chunk=1, **kwargs)
    z_odd, s_odd = anogan_scores(model, features, images, chunk=4, **kwargs)
    torch.testing.assert_close(z_all, z_one, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(z_all, z_odd, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s_all, s_one, atol=1e-3, rtol=1e-4)
    # D's features as trained (BatchNorm on the batch in hand) would leak: the score depends on the batch-mates
    leaky = Features(copy.deepcopy(model.disc[:-1]).requires_grad_(False))
    _, leak_all = anogan_scores(model, leaky, images, chunk=6, **kwargs)
    _, leak_pairs = anogan_scores(model, leaky, images, chunk=2, **kwargs)
    assert (leak_all - leak_pairs).abs().max() > 1e-2


# ---------------------------------------------------------------- data and the stage

def test_one_class_keeps_every_image_of_that_class_and_nothing_else():
    y = torch.tensor([3, 1, 3, 0, 3, 2])
    x = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2)
    normal = one_class({"x": x, "y": y}, 3)
    assert normal["y"].tolist() == [3, 3, 3]
    assert normal["x"][:, 0, 0, 0].tolist() == [0, 2, 4]
    assert len(one_class({"x": x, "y": y}, 7)["y"]) == 0
    test = {"x": x, "y": y}
    assert seeded_subset(test, 0, seed=0) is test and len(seeded_subset(test, 4, seed=0)["y"]) == 4


def stage_params(tiny_params, **changes):
    cfg = AnoganParams(**{"classes": [0, 1], "gan_steps": 2, "vae_steps": 2, "ae_steps": 2,
                          "inversion_steps": 3, "chunk": 40, "bench_single": 2, "figure_images": 4, **changes})
    params = copy.copy(tiny_params)  # the `anogan` section is wired by the lead; set it by hand here
    params.anogan = cfg
    params.raw = {**tiny_params.raw, "anogan": dataclasses.asdict(cfg)}
    return params


def test_the_stage_writes_finite_aurocs_pictures_and_models(tiny_processed, tiny_params, tmp_path):
    params = stage_params(tiny_params)
    summary = anogan_stage(params, tiny_processed, tmp_path / "models" / "anogan", tmp_path / "metrics")
    written = json.loads((tmp_path / "metrics" / "anogan.json").read_text())
    assert written["classes"] == [0, 1] and written["inversion_steps"] == 3
    for method in ("anogan", "vae", "autoencoder"):
        values = list(written["auroc"][method].values())
        assert len(values) == 2 and all(0 <= v <= 1 for v in values), (method, values)
        assert written["mean_auroc"][method] == pytest.approx(sum(values) / 2)
    seconds = written["seconds"]
    assert seconds["device"].startswith("cpu") and seconds["single_images"] == 2 and seconds["speedup"] > 0
    assert written["provenance"]["stage"] == "anogan" and summary["mean_auroc"] == written["mean_auroc"]
    rows = list(csv.DictReader((tmp_path / "metrics" / "plots" / "anogan_auroc.csv").open()))
    assert [r["class"] for r in rows] == ["0", "1"] and set(rows[0]) == {"class", "anogan", "vae", "autoencoder"}
    assert {p.name for p in (tmp_path / "metrics" / "figures" / "anogan").iterdir()} == {"class_0.png", "class_1.png"}
    assert {p.name for p in (tmp_path / "models" / "anogan").iterdir()} == {
        f"{m}_{c}.pt" for m in ("gan", "vae", "autoencoder") for c in (0, 1)}
    assert written["trained_together"] and written["train_steps"] == {"dcgan": 2, "vae": 2, "autoencoder": 2}
    assert set(seconds["train"]) == {"dcgan", "vae", "autoencoder"}


def test_the_stage_trains_each_class_as_it_would_alone(tiny_processed, tiny_params, tmp_path):
    """The classes' models, trained together as copies, are the models fit() trains one class at a time (on a
    CPU, bit for bit), with each class's seed and the stage's steps."""
    params = stage_params(tiny_params, gan_steps=5, vae_steps=5, ae_steps=5)
    anogan_stage(params, tiny_processed, tmp_path / "models", tmp_path / "metrics")
    train = load_split(tiny_processed, "train")
    for name, file in (("dcgan", "gan"), ("vae", "vae"), ("autoencoder", "autoencoder")):
        for c in (0, 1):
            config, seed = one_class_config(params.model(name), 5), params.run.seed + c
            alone = build_model(name, config, SHAPE, CLASSES, seed)
            fit(alone, one_class(train, c), config=config, engine=params.engine, seed=seed, progress=False, steps=5)
            saved = load_model(tmp_path / "models" / f"{file}_{c}.pt", torch.device("cpu"))
            for key, value in alone.state_dict().items():
                assert torch.equal(value, saved.state_dict()[key]), f"{name} class {c}: {key}"


def test_the_stage_refuses_a_class_without_training_images(tiny_processed, tiny_params, tmp_path):
    with pytest.raises(ValueError, match="anogan.classes"):
        anogan_stage(stage_params(tiny_params, classes=[12]), tiny_processed, tmp_path / "m", tmp_path / "x")


def test_figure_rows_are_query_generated_residual(tiny_params):
    from genzoo.stages.anogan import figure

    model = tiny_dcgan(tiny_params)
    labels = torch.tensor([0, 1, 0, 2, 0, 3])
    images = reference(6, seed=4)
    z = initial_codes(model, 6, seed=0)
    grid = figure(model, images, z, labels, c=0, n=2).view(6, 2, *SHAPE)
    torch.testing.assert_close(grid[0], images[[0, 2]])  # normal queries
    torch.testing.assert_close(grid[3], images[[1, 3]])  # anomalies from different classes
    with torch.no_grad():
        torch.testing.assert_close(grid[2], (images[[0, 2]] - model.generate(z[[0, 2]])).abs())
