"""Pix2Pix: the U-Net's skips, the PatchGAN's 10×10 receptive field, the loss (adversarial + λ L1) and its
L1-only ablation, learning a mapping, pictures and scores. (D first, then G through a frozen D:
tests/test_adversarial.py.)"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import paired_batch, same, tiny_evaluator, weights
from torch import nn

from genzoo.models import pix2pix


def tiny_pix2pix(**kw) -> pix2pix.Model:
    torch.manual_seed(0)
    return pix2pix.Model(pix2pix.Config(gen_width=8, disc_width=8, **kw))


def test_pix2pix_shapes_and_range():
    model, batch = tiny_pix2pix(), paired_batch()
    model.eval()
    out = model.translate(batch)
    assert out.shape == (8, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    logits = model.criticize(batch["a"].float() / 255, out * 2 - 1)
    assert logits.shape == (8, 1, 7, 7)  # a map of patch logits, not one logit per image


def test_unet_skips_carry_the_input_past_a_zeroed_bottleneck():
    model = tiny_pix2pix().eval()
    a1, a2 = paired_batch(4, seed=1)["a"], paired_batch(4, seed=2)["a"]
    full = (model.translate({"a": a1}) - model.translate({"a": a2})).abs().mean()
    hook = model.gen.bottleneck.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
    try:
        cut1, cut2 = model.translate({"a": a1}), model.translate({"a": a2})
    finally:
        hook.remove()
    # without skips, a zeroed bottleneck would make G(a) the same constant image for every input
    assert (cut1 - cut2).abs().mean() > 0.1 * full
    assert cut1.flatten(1).std(1).min() > 0


def test_patchgan_receptive_field_is_a_local_10x10_patch():
    model = tiny_pix2pix()
    disc = copy.deepcopy(model.disc)
    for i, layer in enumerate(disc):  # BatchNorm's batch statistics are global by design: test the convolutions
        if isinstance(layer, nn.BatchNorm2d):
            disc[i] = nn.Identity()
    pair = torch.randn(2, 2, 28, 28, requires_grad=True)
    logits = disc(pair)
    assert logits.shape == (2, 1, 7, 7)
    logits[0, 0, 3, 3].backward()
    grad = pair.grad[0].abs().sum(0)  # (28, 28)
    rows, cols = grad.sum(1).nonzero().flatten(), grad.sum(0).nonzero().flatten()
    assert rows.tolist() == list(range(9, 19)) and cols.tolist() == list(range(9, 19))  # 4q-3 .. 4q+6, q = 3
    assert pair.grad[1].abs().sum() == 0  # and never another image's pixels


def test_pix2pix_loss_g_is_the_adversarial_term_plus_lambda_times_l1():
    model, batch = tiny_pix2pix(), paired_batch()
    losses = model.train_step(batch, model.configure_optimizers())
    assert {"loss_d", "d_real", "d_fake", "loss_g_adv", "loss_l1", "loss_g"} <= set(losses)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert float(losses["loss_g"]) == pytest.approx(float(losses["loss_g_adv"]) + 100 * float(losses["loss_l1"]),
                                                    rel=1e-5)


def test_l1_only_ablation_has_no_discriminator():
    model, batch = tiny_pix2pix(adversarial=False, lambda_l1=7.0), paired_batch()
    opt = model.configure_optimizers()
    assert model.disc is None and set(opt) == {"gen"}
    assert not any(k.startswith("disc") for k in model.state_dict())
    before = weights(model.gen)
    losses = model.train_step(batch, opt)
    assert float(losses["loss_g_adv"]) == 0 and "loss_d" not in losses
    assert float(losses["loss_g"]) == pytest.approx(7.0 * float(losses["loss_l1"]), rel=1e-6)
    assert not same(before, weights(model.gen))


def test_pix2pix_learns_the_mapping_on_a_fixed_batch():
    model, batch = tiny_pix2pix(adversarial=False, dropout=0.0, lr=2e-3), paired_batch(4)
    batch["b"] = batch["a"]  # a learnable mapping (the stand-in's b is noise)
    opt = model.configure_optimizers()
    first = float(model.train_step(batch, opt)["loss_l1"])
    for _ in range(10):
        last = float(model.train_step(batch, opt)["loss_l1"])
    assert last < 0.85 * first


def test_pix2pix_pictures_and_scores():
    model, batch = tiny_pix2pix(), paired_batch(20)
    grids = model.pictures(batch)
    images, nrow = grids["translations"]
    assert nrow == 10 and images.shape == (2 * 3 * 10, 1, 28, 28)
    assert torch.equal(images[:10], batch["a"][:10].float() / 255)  # row 1: inputs; row 3: truth
    assert torch.equal(images[20:30], batch["b"][:10].float() / 255)
    scores = model.extra_scores({"train": batch, "val": batch, "test": batch}, tiny_evaluator())
    assert set(scores) == {"accuracy", "l1", "psnr", "ssim", "fd"}
