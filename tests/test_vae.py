"""The VAE: the IWAE bound against the ELBO, chunking, the KL warm-up counter, and its pictures."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import CLASSES, SHAPE, images, tiny_model

import genzoo.models.blocks as blocks
from genzoo.engine.training import seed_everything
from genzoo.models.registry import build_model


def test_iwae_bound_is_at_least_the_elbo_and_tightens_with_k(tiny_params):
    seed_everything(0)
    model = tiny_model("vae", tiny_params).eval()
    xb = images(n=64)["xb"].float()
    elbo = torch.stack([model.elbo(xb)["elbo"].mean() for _ in range(20)]).mean()
    iwae_1 = torch.stack([model.log_likelihood(xb, k=1).mean() for _ in range(20)]).mean()
    iwae_50 = model.log_likelihood(xb, k=50).mean()
    iwae_500 = model.log_likelihood(xb, k=500).mean()
    assert iwae_1 == pytest.approx(elbo.item(), rel=0.02)  # k = 1 *is* the ELBO
    assert iwae_50 > elbo and iwae_500 > iwae_50


def test_iwae_chunking_does_not_change_the_bound(tiny_params, monkeypatch):
    """Splitting the k samples into chunks must give the same estimator (a wrong log k would shift it)."""
    model = tiny_model("vae", tiny_params).eval()
    xb = images(n=4)["xb"].float()
    torch.manual_seed(0)
    whole = model.log_likelihood(xb, k=2000)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 4 * 784 * 7)  # 7 samples per chunk: 286 chunks
    chunked = model.log_likelihood(xb, k=2000)
    torch.testing.assert_close(whole, chunked, atol=0.3, rtol=0)  # Monte Carlo noise only


def test_vae_kl_warmup_counts_steps_on_the_device(tiny_params):
    config = dataclasses.replace(tiny_params.model("vae"), kl_warmup_steps=10)
    model = build_model("vae", config, SHAPE, CLASSES)
    opt = model.configure_optimizers()
    for _ in range(3):
        losses = model.train_step(images(), opt)
    assert int(model.steps) == 3  # a buffer: saved, resumed and CUDA-graph safe
    assert losses["loss"] == pytest.approx((losses["kl"] + losses["rec"]).item())  # logged loss is -ELBO, unweighted


def test_vae_pictures_include_the_manifold_only_for_a_2d_latent(tiny_params):
    model = tiny_model("vae", tiny_params).eval()
    assert model.config.latent_dim == 2
    data = {"test": torch.rand(60, *SHAPE), "train": images(20)["x"]}
    grids = model.pictures(data)
    assert set(grids) == {"samples", "reconstructions", "inverted_interpolation", "manifold"}
    assert grids["manifold"][0].shape == (400, *SHAPE)
    model.config.latent_dim = 3
    wide = build_model("vae", model.config, SHAPE, CLASSES)
    assert "manifold" not in wide.eval().pictures(data)


def _first_step_loss(model, batch) -> float:
    seed_everything(0)
    return model.train_step(batch, model.configure_optimizers())["loss"].item()


def test_static_binarization_trains_on_the_stored_draw(tiny_params):
    """static: every step reads the one fixed draw "xb" (the papers' binarized MNIST), so the grey levels "x" do
    not matter; dynamic: a fresh Bernoulli draw of "x", so they do."""
    batch = images(n=16)
    inverted = {**batch, "x": 255 - batch["x"]}
    for binarization, same in (("static", True), ("dynamic", False)):
        config = dataclasses.replace(tiny_params.model("vae"), binarization=binarization)
        losses = [_first_step_loss(build_model("vae", config, SHAPE, CLASSES, seed=0), b) for b in (batch, inverted)]
        assert (losses[0] == losses[1]) is same, (binarization, losses)


def test_the_paper_recipe_knobs_reach_the_network_and_the_optimizer(tiny_params):
    """Burda et al. 2016's VAE: tanh units and Adam with epsilon 1e-4."""
    config = dataclasses.replace(tiny_params.model("vae"), activation="tanh", adam_eps=1e-4)
    model = build_model("vae", config, SHAPE, CLASSES, seed=0)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
    assert model.configure_optimizers()["model"].defaults["eps"] == 1e-4
    assert torch.nn.ReLU in {type(m) for m in tiny_model("vae", tiny_params).modules()}  # the default is unchanged
