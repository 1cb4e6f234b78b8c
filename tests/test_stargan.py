"""StarGAN: label vectors and their mask, the masked classification loss, k critic steps and the gradient penalty,
the losses' fixed points, and the attribute classifier that scores translations. (The update order:
tests/test_adversarial.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import same, snapshot
from torch import nn

from genzoo.engine.training import seed_everything
from genzoo.metrics import attributes, once
from genzoo.models import stargan

SHAPE = (3, 28, 28)


def tiny_stargan(seed=0, **changes) -> stargan.Model:
    config = dataclasses.replace(stargan.Config(), g_width=4, res_blocks=1, d_width=4, d_steps=2, **changes)
    torch.manual_seed(seed)
    return stargan.Model(config, SHAPE)


def multidomain_batch(n, seed=0):
    """Stand-in training rows: random coloured images; even rows carry colour only (set 0), odd rows stroke only."""
    gen = torch.Generator().manual_seed(seed)
    colour, stroke = torch.randint(0, 3, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen)
    odd = torch.arange(n) % 2 == 1
    return {"x": (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8), "y": torch.arange(n) % 10,
            "colour": torch.where(odd, -1, colour), "stroke": torch.where(odd, stroke, -1), "set": odd.long()}


def test_label_vector_one_hots_the_known_groups_and_masks_the_unknown():
    c = stargan.label_vector(torch.tensor([0, -1, 2]), torch.tensor([-1, 1, 0]))
    expected = torch.tensor([[1, 0, 0, 0, 0, 0, 1, 0],
                             [0, 0, 0, 0, 1, 0, 0, 1],
                             [0, 0, 1, 1, 0, 0, 1, 1]], dtype=torch.float)
    torch.testing.assert_close(c, expected)
    torch.testing.assert_close(stargan.target_vector(2, None, 2), torch.tensor([[0, 0, 0, 0, 0, 1, 0, 1.0]] * 2))


def test_random_targets_stay_in_each_rows_own_group():
    torch.manual_seed(0)
    c_org = stargan.label_vector(torch.tensor([1, -1] * 200), torch.tensor([-1, 2] * 200))
    c_trg = stargan.random_target(c_org)
    torch.testing.assert_close(c_trg[:, 6:], c_org[:, 6:])  # the same mask
    assert (c_trg[0::2, 3:6] == 0).all() and (c_trg[1::2, :3] == 0).all()  # the unknown group stays zeros
    assert (c_trg[0::2, :3].sum(1) == 1).all() and (c_trg[1::2, 3:6].sum(1) == 1).all()
    assert set(c_trg[0::2, :3].argmax(1).tolist()) == {0, 1, 2}  # every colour drawn, not only the own one


def test_classification_loss_ignores_the_unknown_group():
    logits = torch.randn(4, 6, requires_grad=True)
    c = stargan.label_vector(torch.tensor([0, 2, -1, -1]), torch.tensor([-1, -1, 1, 0]))
    loss = stargan.classification_loss(logits, c)
    loss.backward()
    grad = logits.grad
    assert (grad[:2, 3:] == 0).all() and (grad[2:, :3] == 0).all()  # colour-only rows: no stroke gradient, etc.
    assert (grad[:2, :3] != 0).all() and (grad[2:, 3:] != 0).all()
    ce = nn.functional.cross_entropy
    expected = (ce(logits[:2, :3], torch.tensor([0, 2]), reduction="sum")
                + ce(logits[2:, 3:], torch.tensor([1, 0]), reduction="sum")) / 4
    torch.testing.assert_close(loss, expected)


def test_translate_gives_images_in_range_the_same_in_eval_and_train_mode():
    model = tiny_stargan()
    batch = multidomain_batch(5)
    target = stargan.target_vector(1, 2, None)[0]  # (8,): broadcast over the batch
    out = model.translate(batch, target)
    assert out.shape == (5, *SHAPE) and out.min() >= 0 and out.max() <= 1
    model.eval()
    torch.testing.assert_close(model.translate(batch, target.expand(5, -1)), out)  # no running statistics
    assert not torch.equal(model.translate(batch, stargan.target_vector(5, 0, None)), out)  # c reaches G
    outs = model.all_targets(batch)
    assert len(outs) == 15 and all(v.shape == (5, *SHAPE) for v in outs.values())
    grids = model.pictures({k: v[:3] for k, v in batch.items()})
    assert grids["targets"][0].shape == (3 * 16, *SHAPE) and grids["targets"][1] == 16


class ScaledIdentity(nn.Module):
    """G(x, c) = s·x with s = 1: the reconstruction G(G(x, c_trg), c_org) is x itself."""

    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.ones(()))

    def forward(self, x, c):
        return x * self.s


def test_reconstruction_loss_is_zero_for_an_identity_generator():
    seed_everything(0)
    model = tiny_stargan()
    model.gen = ScaledIdentity()
    out = model.train_step(multidomain_batch(8), model.configure_optimizers())
    assert out["loss_rec"] == 0
    x = torch.rand(2, *SHAPE)
    assert stargan.reconstruction_loss(x, x) == 0 and stargan.reconstruction_loss(x, 1 - x) > 0


@pytest.mark.parametrize("adv_loss", stargan.ADV_LOSSES)
def test_k_critic_steps_and_the_gradient_penalty_only_for_wgan_gp(adv_loss):
    """The engine hands the step its d_steps minibatches at once; the penalty term exists for WGAN-GP alone.
    (D's k steps first, then G through a frozen D: tests/test_adversarial.py, for both losses.)"""
    seed_everything(0)
    model = tiny_stargan(adv_loss=adv_loss).train()
    assert model.batches_per_step == 2
    out = model.train_step(multidomain_batch(8), model.configure_optimizers())
    assert ("loss_gp" in out) == (adv_loss == "wgan_gp")
    assert all(torch.isfinite(v) for v in out.values())


def test_gradient_penalty_of_a_linear_critic():
    torch.manual_seed(0)
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    w = torch.randn(3 * 4 * 4)
    unit = lambda x: x.flatten(1) @ (w / w.norm())  # gradient norm 1 everywhere
    double = lambda x: x.flatten(1) @ (2 * w / w.norm())  # gradient norm 2: penalty (2 - 1)² = 1
    assert stargan.gradient_penalty(unit, real, fake).abs() < 1e-10
    torch.testing.assert_close(stargan.gradient_penalty(double, real, fake), torch.tensor(1.0))


def bar_images(n, seed=0):
    """A vertical bar in one colour channel, 1, 3 or 5 px wide: colour and "stroke" to classify."""
    gen = torch.Generator().manual_seed(seed)
    colour, stroke = torch.randint(0, 3, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen)
    x = torch.zeros(n, *SHAPE, dtype=torch.uint8)
    for i in range(n):
        col = int(torch.randint(6, 20, (1,), generator=gen))
        x[i, colour[i], 4:24, col:col + 1 + 2 * int(stroke[i])] = 255
    return x, colour, stroke


def test_attribute_classifier_learns_a_tiny_set_deterministically():
    x, colour, stroke = bar_images(96)
    model = attributes.fit_attribute_classifier(x, colour, stroke, seed=0, steps=100)
    x_new, colour_new, stroke_new = bar_images(64, seed=1)
    pred_c, pred_s = attributes.predict_attributes(model, x_new.float() / 255)
    assert (pred_c == colour_new).float().mean() == 1
    assert (pred_s == stroke_new).float().mean() >= 0.95
    short = attributes._fit(x, colour, stroke, seed=0, steps=10)
    twin = attributes._fit(x, colour, stroke, seed=0, steps=10)  # the fit itself, not the per-process memo
    assert same(snapshot(short), snapshot(twin))


def test_the_attribute_classifier_is_fitted_once_per_process_for_the_same_digits(monkeypatch):
    """StarGAN and StackGAN are scored in one evaluate process on the same val digits: one fit serves both; other
    digits, labels, seed or steps fit anew."""
    monkeypatch.setattr(once, "_TAKEN", {})
    fits = []
    real_fit = attributes._fit
    monkeypatch.setattr(attributes, "_fit", lambda *args: fits.append(args) or real_fit(*args))
    x, colour, stroke = bar_images(32)
    first = attributes.fit_attribute_classifier(x, colour, stroke, seed=0, steps=5)
    assert attributes.fit_attribute_classifier(x.clone(), colour.clone(), stroke.clone(), seed=0, steps=5) is first
    assert len(fits) == 1
    flipped = stroke.clone()
    flipped[0] = (flipped[0] + 1) % 3
    others = [((x, colour, flipped), 0, 5), ((x, colour, stroke), 1, 5), ((x, colour, stroke), 0, 6),
              ((x[:31], colour[:31], stroke[:31]), 0, 5)]
    for args, seed, steps in others:
        assert attributes.fit_attribute_classifier(*args, seed=seed, steps=steps) is not first
    assert len(fits) == 5


class Recolour(nn.Module):
    """An oracle translator for the score plumbing: moves the brightest channel to the asked colour, keeps the
    stroke as it is (so stroke targets are reached only where they already hold)."""

    def all_targets(self, batch, joint=False):
        grey = batch["x"].float().amax(1, keepdim=True) / 255
        outs = {}
        for i, c in enumerate(stargan.COLOURS):
            coloured = torch.zeros(len(grey), 3, 28, 28)
            coloured[:, i:i + 1] = grey
            outs[c] = coloured
        outs.update({s: batch["x"].float() / 255 for s in stargan.STROKES})
        outs.update({f"{c}_{s}": outs[c] for c in stargan.COLOURS for s in stargan.STROKES})
        return outs


class OracleDigits:
    def __init__(self, labels):
        self.labels = labels

    def predict(self, x01):
        assert x01.shape[1] == 1  # the evaluator reads one grey channel
        return self.labels[:len(x01)]


def test_score_translations_counts_reached_targets_and_kept_digits():
    x, colour, stroke = bar_images(96)
    test = {"x": x[:30], "colour": colour[:30], "stroke": stroke[:30], "y": torch.arange(30) % 10}
    data = {"val": {"x": x, "colour": colour, "stroke": stroke}, "test": test}
    scores = attributes.score_translations(Recolour(), data, OracleDigits(test["y"]), classifier_steps=100)
    assert scores["real_colour_accuracy"] == 1 and scores["real_digit_accuracy"] == 1
    assert scores["red_reached"] == scores["blue_reached"] == 1 and scores["red_digit"] == 1
    for j, s in enumerate(stargan.STROKES):  # the identity reaches a stroke exactly where it already holds
        assert scores[f"{s}_reached"] == pytest.approx((stroke[:30] == j).float().mean().item(), abs=0.04)
        assert scores[f"green_{s}_reached"] == scores[f"{s}_reached"]
    assert scores["single_reached_min"] < 0.6 and scores["combo_digit_min"] == 1


def test_residual_output_generator_adds_a_change_to_its_input():
    model = tiny_stargan(residual_output=True)
    last = model.gen.net[-1]
    assert isinstance(last, nn.Conv2d)  # no tanh: the change is unbounded, the sum is clamped to [-1, 1]
    batch = multidomain_batch(4)
    real_a = batch["x"].float() / 255 * 2 - 1
    c = stargan.target_vector(4, 1, None)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    torch.testing.assert_close(model.gen(real_a, c), real_a)  # a zero change: the input itself
    torch.testing.assert_close(model.translate(batch, c[0]), batch["x"].float() / 255)
    nn.init.constant_(last.bias, 0.5)
    torch.testing.assert_close(model.gen(real_a, c), (real_a + 0.5).clamp(-1, 1))
    plain = tiny_stargan(residual_output=False)
    assert isinstance(plain.gen.net[-1], nn.Tanh)  # the paper's G by default
    assert stargan.Config().residual_output is False and stargan.Config().max_steps == 0


def test_skips_join_the_way_downs_maps_to_the_way_up_and_leave_the_papers_generator_as_it_was():
    plain, skipped = tiny_stargan(residual_output=True), tiny_stargan(residual_output=True, skips=True)
    assert stargan.Config().skips is False  # the paper's G by default
    assert plain.gen.state_dict().keys() == skipped.gen.state_dict().keys()  # the same layers, wider up inputs
    up2, last = (skipped.gen.net[i] for i in skipped.gen.up_starts)
    assert (up2.in_channels, last.in_channels) == (2 * 2 * 4, 2 * 4)  # its own maps and the skip's, g_width 4
    assert (plain.gen.net[plain.gen.up_starts[0]].in_channels, plain.gen.net[-1].in_channels) == (2 * 4, 4)
    batch = multidomain_batch(4)
    real_a = batch["x"].float() / 255 * 2 - 1
    c = stargan.target_vector(4, 0, None)
    out = skipped.gen(real_a, c)
    assert out.shape == real_a.shape
    stem = skipped.gen.net[0]
    out.abs().sum().backward()  # the stem reaches the output past the bottleneck too
    with torch.no_grad():
        for layer in skipped.gen.net[3:skipped.gen.up_starts[1]]:  # cut every path but the 28×28 skip
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                layer.weight.zero_()
    stem.weight.grad = None
    skipped.gen(real_a, c).abs().sum().backward()
    assert stem.weight.grad.abs().sum() > 0
    skipped.train_step(multidomain_batch(8), skipped.configure_optimizers())  # trains (d_steps 2: 2 × 4 rows)
