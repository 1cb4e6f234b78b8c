"""Every registered model keeps the contract (parametrized over the registry), plus model-specific checks."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from conftest import ROOT

from genzoo.data.derived import BESIDE
from genzoo.models import GENERATIVE, TRAINABLE, build_model, load_model, save_model
from genzoo.models.evaluator import random_shift
from genzoo.training import seed_everything

SHAPE, CLASSES = (1, 28, 28), 10


def tiny_model(name, tiny_params, seed=0):
    model = build_model(name, tiny_params.model(name), SHAPE, CLASSES, seed)
    if getattr(model, "needs_evaluator", False):  # a fresh tiny evaluator stands in for the trained one
        model.attach_evaluator(build_model("evaluator", tiny_params.model("evaluator"), SHAPE, CLASSES).eval())
    if hasattr(model, "attach_labelled"):  # semi-supervised: a few labelled images beside the unlabelled batches
        labelled = batch(20, seed=99)
        model.attach_labelled(labelled["x"], labelled["y"])
    return model


def batch(n=8, seed=0):
    # Not the global seed: pixels drawn from the same stream as the binarization would all binarize to 0.
    gen = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8)
    return {"x": x, "y": torch.arange(n) % CLASSES, "xb": (torch.rand(n, *SHAPE, generator=gen) < 0.3).to(torch.uint8)}


def model_batch(model, n=8, seed=0, split="train"):
    """A batch of the data the model learns from: base images, or its derived set built from them."""
    dataset = getattr(model, "dataset", None)
    if dataset is None:
        return batch(n, seed)
    if dataset == "strokes":  # traced from tiny_data's bars: one stroke of two points each
        from tiny_data import tiny_images

        from genzoo.data.strokes import build_mnist_strokes

        labels = torch.arange(n) % CLASSES
        images = tiny_images(labels, SHAPE[-1], torch.Generator().manual_seed(1000 + seed))[:, None]
        return build_mnist_strokes({"x": images, "y": labels}, max_len=8)
    from genzoo.data.derived import build

    return build(dataset, batch(2 * n, seed), seed=0, split=split)


def model_output(model, b):
    """What a model makes, for comparisons: samples, translations, or (evaluator) logits."""
    if hasattr(model, "sample"):
        return model.sample(4)
    if hasattr(model, "all_targets"):  # StarGAN: every target domain of the batch, stacked
        return torch.cat(list(model.all_targets(b).values()))
    if hasattr(model, "translate"):
        return model.translate(b)
    if hasattr(model, "reconstruct"):  # Sketch-RNN: greedy reconstructions, stroke-5
        return model.reconstruct(b, 0.0)
    if hasattr(model, "generate"):  # StackGAN: both stages' images for the batch's captions
        return torch.cat([t.flatten(1) for t in model.generate(b["tokens"])], 1)
    return model(b["x"].float() / 255)


@pytest.mark.parametrize("name", TRAINABLE)
def test_same_seed_same_initial_weights(name, tiny_params):
    a, b = tiny_model(name, tiny_params), tiny_model(name, tiny_params)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    c = tiny_model(name, tiny_params, seed=1)
    assert any(not torch.equal(c.state_dict()[k], v) for k, v in a.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_changes_the_weights_and_returns_finite_scalars(name, tiny_params):
    seed_everything(0)
    model = tiny_model(name, tiny_params).train()
    before = {k: v.clone() for k, v in model.named_parameters()}
    losses = model.train_step(model_batch(model), model.configure_optimizers())
    assert losses and all(v.ndim == 0 and torch.isfinite(v) and not v.requires_grad for v in losses.values())
    changed = [k for k, v in model.named_parameters() if not torch.equal(before[k], v)]
    assert changed == list(before), f"not updated: {set(before) - set(changed)}"


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_few_steps_on_a_tiny_tensor_stay_finite(name, tiny_params):
    seed_everything(0)
    model = tiny_model(name, tiny_params).train()
    opt = model.configure_optimizers()
    for step in range(5):
        losses = model.train_step(model_batch(model, seed=step), opt)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    values = model.validate(model_batch(model, split="val"))
    assert values and all(torch.isfinite(v) for v in values.values())


@pytest.mark.parametrize("name", TRAINABLE)
def test_save_load_round_trip_gives_identical_outputs(name, tiny_params, tmp_path):
    seed_everything(0)
    model = tiny_model(name, tiny_params)
    model.train_step(model_batch(model), model.configure_optimizers())  # move BatchNorm statistics off defaults
    model.eval()
    path = save_model(model, name, tmp_path / "model.pt")
    loaded = load_model(path)
    b = model_batch(model, split="test")
    torch.manual_seed(1)
    expected = model_output(model, b)
    torch.manual_seed(1)
    got = model_output(loaded, b)
    assert torch.equal(expected, got)
    assert loaded.config == model.config


@pytest.mark.parametrize("name", [n for n, cls in GENERATIVE.items() if hasattr(cls, "sample")])
def test_samples_are_images_in_unit_range(name, tiny_params):
    samples = tiny_model(name, tiny_params).eval().sample(6)
    assert samples.shape == (6, *SHAPE)
    assert samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("name", [n for n, cls in GENERATIVE.items() if hasattr(cls, "log_likelihood")])
def test_log_likelihood_is_finite_and_not_positive(name, tiny_params):
    log_p = tiny_model(name, tiny_params).eval().log_likelihood(batch()["xb"].float(), k=7)
    assert log_p.shape == (8,)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()


def test_iwae_bound_is_at_least_the_elbo_and_tightens_with_k(tiny_params):
    seed_everything(0)
    model = tiny_model("vae", tiny_params).eval()
    xb = batch(n=64)["xb"].float()
    elbo = torch.stack([model.elbo(xb)["elbo"].mean() for _ in range(20)]).mean()
    iwae_1 = torch.stack([model.log_likelihood(xb, k=1).mean() for _ in range(20)]).mean()
    iwae_50 = model.log_likelihood(xb, k=50).mean()
    iwae_500 = model.log_likelihood(xb, k=500).mean()
    assert iwae_1 == pytest.approx(elbo.item(), rel=0.02)  # k = 1 *is* the ELBO
    assert iwae_50 > elbo and iwae_500 > iwae_50


def test_iwae_chunking_does_not_change_the_bound(tiny_params, monkeypatch):
    """Splitting the k samples into chunks must give the same estimator (a wrong log k would shift it)."""
    import genzoo.models.blocks as blocks

    model = tiny_model("vae", tiny_params).eval()
    xb = batch(n=4)["xb"].float()
    torch.manual_seed(0)
    whole = model.log_likelihood(xb, k=2000)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 4 * 784 * 7)  # 7 samples per chunk: 286 chunks
    chunked = model.log_likelihood(xb, k=2000)
    torch.testing.assert_close(whole, chunked, atol=0.3, rtol=0)  # Monte Carlo noise only


def test_vae_kl_warmup_counts_steps_on_the_device(tiny_params):
    import dataclasses

    config = dataclasses.replace(tiny_params.model("vae"), kl_warmup_steps=10)
    model = build_model("vae", config, SHAPE, CLASSES)
    opt = model.configure_optimizers()
    for _ in range(3):
        losses = model.train_step(batch(), opt)
    assert int(model.steps) == 3  # a buffer: saved, resumed and CUDA-graph safe
    assert losses["loss"] == pytest.approx((losses["kl"] + losses["rec"]).item())  # logged loss is -ELBO, unweighted


def test_vae_pictures_include_the_manifold_only_for_a_2d_latent(tiny_params):
    model = tiny_model("vae", tiny_params).eval()
    assert model.config.latent_dim == 2
    data = {"test": torch.rand(60, *SHAPE), "train": batch(20)["x"]}
    grids = model.pictures(data)
    assert set(grids) == {"samples", "reconstructions", "inverted_interpolation", "manifold"}
    assert grids["manifold"][0].shape == (400, *SHAPE)
    model.config.latent_dim = 3
    wide = build_model("vae", model.config, SHAPE, CLASSES)
    assert "manifold" not in wide.eval().pictures(data)


@pytest.mark.parametrize("name", [n for n, cls in GENERATIVE.items() if hasattr(cls, "pictures")])
def test_pictures_are_named_grids_of_unit_range_images(name, tiny_params):
    """What the train stage hands every model: 100 test images, their labels and the uint8 training split."""
    seed_everything(0)
    model = tiny_model(name, tiny_params).eval()
    if getattr(model, "dataset", None) is None:
        data = {"test": torch.rand(100, *SHAPE), "test_y": torch.arange(100) % CLASSES, "train": batch(40)["x"]}
    else:  # a derived set: its first test rows, every key, as stored
        data = model_batch(model, n=20, split="test")
    grids = model.pictures(data)
    assert grids
    for picture, (images, nrow) in grids.items():
        assert re.fullmatch(r"[a-z0-9_]+", picture) and nrow >= 1
        assert images.ndim == 4 and images.shape[1] in (1, 3) and len(images) >= 1
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


def test_evaluator_features_and_random_shift(tiny_params):
    model = tiny_model("evaluator", tiny_params).eval()
    x = torch.rand(5, *SHAPE)
    assert model.features(x).shape == (5, tiny_params.model("evaluator").features)
    assert model.predict(x).shape == (5,)
    torch.testing.assert_close(random_shift(x, 0.0), x, atol=1e-5, rtol=0)
    shifted = random_shift(x, 3.0)
    assert shifted.shape == x.shape and not torch.allclose(shifted, x)


def test_registry_matches_dvc_yaml_and_every_profile():
    """A model in the registry but not in the pipeline (or the reverse) would silently never be trained."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    derived = [name for name, cls in GENERATIVE.items() if getattr(cls, "dataset", None)]
    assert list(stages["train"]["foreach"]) == [name for name in GENERATIVE if name not in derived]
    assert list(stages["train_translation"]["foreach"]) == derived
    for name, file in stages["train"]["foreach"].items():  # name -> the model file its stage depends on
        assert GENERATIVE[name].__module__ == f"genzoo.models.{file}", (name, file)
    for name, item in stages["train_translation"]["foreach"].items():  # name -> its file and its set's folder
        assert GENERATIVE[name].__module__ == f"genzoo.models.{item['file']}", (name, item)
        dataset = GENERATIVE[name].dataset
        assert item["data"] == (f"data/{dataset}" if dataset in BESIDE else "data/derived"), (name, item)
        assert item["data"] in stages["evaluate"]["deps"]
    for name in GENERATIVE:
        assert f"models/{name}" in stages["evaluate"]["deps"]
        assert f"metrics/{name}.json" in stages["report"]["deps"]
    config = yaml.safe_load((ROOT / "pipeline/conf/config.yaml").read_text())
    assert set(TRAINABLE) <= set(config)


def test_each_model_file_names_its_paper():
    for cls in GENERATIVE.values():
        doc = __import__(cls.__module__, fromlist=["_"]).__doc__
        assert re.search(r"\b(19|20)\d\d\b", doc), f"{cls.__module__} docstring should cite its paper"
        assert math.isfinite(len(doc))
