"""Pix2Pix, EnhanceNet and the shared translation metrics (genzoo.metrics.translation)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genzoo.metrics.translation import translate_all, translation_scores
from genzoo.models import enhancenet, evaluator, pix2pix


def paired_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Stand-in for derived "paired": a = a binary edge-like map, b = a grey digit-like image."""
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    a = ((torch.rand(n, 1, 28, 28, generator=g) > 0.8) * 255).to(torch.uint8)
    return {"a": a, "b": b, "y": torch.randint(0, 10, (n,), generator=g)}


def superres_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    a = F.avg_pool2d(b.float(), 4).round().to(torch.uint8)  # (n, 1, 7, 7) area-downsampled
    return {"a": a, "b": b, "y": torch.randint(0, 10, (n,), generator=g)}


def tiny_evaluator() -> evaluator.Model:
    torch.manual_seed(0)
    return evaluator.Model(evaluator.Config(width=4, features=8)).eval()


def tiny_pix2pix(**kw) -> pix2pix.Model:
    torch.manual_seed(0)
    return pix2pix.Model(pix2pix.Config(gen_width=8, disc_width=8, **kw))


def tiny_enhancenet(**kw) -> enhancenet.Model:
    torch.manual_seed(0)
    return enhancenet.Model(enhancenet.Config(width=8, blocks=1, disc_width=4, **kw))


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------- Pix2Pix

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


def test_pix2pix_updates_d_first_and_g_step_leaves_d_unchanged():
    model, batch = tiny_pix2pix(), paired_batch()
    opt = model.configure_optimizers()
    order, disc_after_d_step, gen_at_d_step = [], [], []
    gen_before = snapshot(model.gen)

    def wrap(name, step):
        def wrapped(*a, **k):
            order.append(name)
            result = step(*a, **k)
            if name == "disc":
                disc_after_d_step.extend(snapshot(model.disc))
                gen_at_d_step.extend(snapshot(model.gen))
            return result
        return wrapped

    for name in ("disc", "gen"):
        opt[name].step = wrap(name, opt[name].step)
    disc_before = snapshot(model.disc)
    losses = model.train_step(batch, opt)
    assert order == ["disc", "gen"]
    assert not same(disc_before, disc_after_d_step)  # D learned ...
    assert same(disc_after_d_step, snapshot(model.disc))  # ... and G's step did not touch it
    assert same(gen_before, gen_at_d_step) and not same(gen_before, snapshot(model.gen))
    assert all(p.requires_grad for p in model.disc.parameters())  # unfrozen again
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert float(losses["loss_g"]) == pytest.approx(float(losses["loss_g_adv"]) + 100 * float(losses["loss_l1"]),
                                                    rel=1e-5)


def test_l1_only_ablation_has_no_discriminator():
    model, batch = tiny_pix2pix(adversarial=False, lambda_l1=7.0), paired_batch()
    opt = model.configure_optimizers()
    assert model.disc is None and set(opt) == {"gen"}
    assert not any(k.startswith("disc") for k in model.state_dict())
    before = snapshot(model.gen)
    losses = model.train_step(batch, opt)
    assert float(losses["loss_g_adv"]) == 0 and "loss_d" not in losses
    assert float(losses["loss_g"]) == pytest.approx(7.0 * float(losses["loss_l1"]), rel=1e-6)
    assert not same(before, snapshot(model.gen))


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


# ---------------------------------------------------------------- EnhanceNet

def test_enhancenet_output_is_bicubic_plus_residual():
    model, batch = tiny_enhancenet(loss="pixel"), superres_batch()
    a01 = batch["a"].float() / 255
    assert model.translate(batch).shape == (8, 1, 28, 28)
    assert not torch.allclose(model.gen(a01), enhancenet.bicubic(a01))
    nn.init.zeros_(model.gen.residual.weight)
    nn.init.zeros_(model.gen.residual.bias)
    expected = F.interpolate(a01, size=(28, 28), mode="bicubic", align_corners=False)
    assert torch.allclose(model.gen(a01), expected)
    assert torch.equal(model.translate(batch), expected.clamp(0, 1))


def test_gram_matrix_of_a_known_map():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]).unsqueeze(0)  # (1, 2, 2, 2)
    assert torch.equal(enhancenet.gram(maps, 2), torch.tensor([[[30.0, 10.0], [10.0, 4.0]]]))
    per_pixel = enhancenet.gram(maps, 1)  # four 1×1 patches: [[v², v], [v, 1]]
    expected = torch.stack([torch.tensor([[v * v, v], [v, 1.0]]) for v in (1.0, 2.0, 3.0, 4.0)])
    assert torch.equal(per_pixel, expected)


def test_perceptual_and_texture_losses_vanish_only_for_identical_images():
    model = tiny_enhancenet()
    model.attach_evaluator(tiny_evaluator())
    x = superres_batch(4)["b"].float() / 255
    zero = model.perceptual_losses(x, x.clone())
    assert float(zero["loss_perceptual"]) == 0 and float(zero["loss_texture"]) == 0
    other = model.perceptual_losses(x, x.flip(-1))
    assert float(other["loss_perceptual"]) > 0 and float(other["loss_texture"]) > 0


def test_pixel_mode_needs_no_evaluator_and_perceptual_mode_does():
    pixel, batch = tiny_enhancenet(loss="pixel"), superres_batch()
    assert pixel.disc is None
    before = snapshot(pixel.gen)
    losses = pixel.train_step(batch, pixel.configure_optimizers())
    assert not same(before, snapshot(pixel.gen)) and math.isfinite(float(losses["loss_g"]))
    perceptual = tiny_enhancenet()
    with pytest.raises(RuntimeError, match="attach_evaluator"):
        perceptual.train_step(batch, perceptual.configure_optimizers())


def test_enhancenet_evaluator_stays_frozen_and_out_of_the_state_dict():
    model, ev = tiny_enhancenet(), tiny_evaluator()
    ev_before = snapshot(ev)
    model.attach_evaluator(ev)
    model.train()
    assert not ev.training and not any(p.requires_grad for p in ev.parameters())
    assert not any("perceptual" in k for k in model.state_dict())
    opt = model.configure_optimizers()
    model.train_step(superres_batch(), opt)
    assert same(ev_before, snapshot(ev))
    assert model.to(torch.float64)._perceptual.body[0][0].weight.dtype == torch.float64  # follows the model


def test_enhancenet_updates_d_first_and_g_step_leaves_d_unchanged():
    model = tiny_enhancenet()
    model.attach_evaluator(tiny_evaluator())
    opt = model.configure_optimizers()
    order, disc_after_d_step = [], []
    d_step, g_step = opt["disc"].step, opt["gen"].step

    def d_wrapped(*a, **k):
        order.append("disc")
        result = d_step(*a, **k)
        disc_after_d_step.extend(snapshot(model.disc))
        return result

    def g_wrapped(*a, **k):
        order.append("gen")
        return g_step(*a, **k)

    opt["disc"].step, opt["gen"].step = d_wrapped, g_wrapped
    disc_before = snapshot(model.disc)
    losses = model.train_step(superres_batch(), opt)
    assert order == ["disc", "gen"]
    assert not same(disc_before, disc_after_d_step) and same(disc_after_d_step, snapshot(model.disc))
    assert {"loss_d", "loss_g_adv", "loss_perceptual", "loss_texture", "loss_g"} <= set(losses)


def test_enhancenet_pictures_and_bicubic_baseline_scores():
    model, batch = tiny_enhancenet(loss="pixel"), superres_batch(10)
    images, nrow = model.pictures(batch)["superresolution"]
    assert nrow == 10 and images.shape == (4 * 10, 1, 28, 28)
    assert torch.equal(images[30:], batch["b"].float() / 255)
    scores = model.extra_scores({"train": batch, "val": batch, "test": batch}, tiny_evaluator())
    assert {"accuracy", "psnr", "bicubic_accuracy", "bicubic_psnr", "bicubic_ssim", "bicubic_fd"} <= set(scores)
    bicubic = enhancenet.bicubic(batch["a"].float() / 255).clamp(0, 1)
    l1 = (bicubic - batch["b"].float() / 255).abs().mean()
    assert scores["bicubic_l1"] == pytest.approx(float(l1), rel=1e-5)


# ---------------------------------------------------------------- translation metrics

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
    model, batch = tiny_pix2pix(), paired_batch(7)
    model.train()
    chunked = translate_all(model, batch, batch_size=3)
    assert model.training
    model.eval()
    assert torch.allclose(chunked, model.translate(batch), atol=1e-6)


def test_enhancenet_comparison_rows_are_input_bicubic_mse_perceptual_truth():
    """The evaluate stage's cross-model picture (the paper's figure): five rows of the same test digits."""
    from genzoo.data.derived import bicubic_upsample
    from genzoo.evaluate import enhancenet_comparison

    test = superres_batch(n=6)
    pixel, perceptual = tiny_enhancenet(loss="pixel").eval(), tiny_enhancenet(loss="pixel").eval()
    torch.nn.init.constant_(list(perceptual.parameters())[-1], 0.3)  # make the two models differ
    grid = enhancenet_comparison(pixel, perceptual, test, n=6)
    assert grid.shape == (30, 1, 28, 28) and grid.min() >= 0 and grid.max() <= 1
    torch.testing.assert_close(grid[6:12], bicubic_upsample(test["a"]))
    torch.testing.assert_close(grid[12:18], pixel.translate({"a": test["a"]}))
    torch.testing.assert_close(grid[18:24], perceptual.translate({"a": test["a"]}))
    torch.testing.assert_close(grid[24:], test["b"].float() / 255)
    assert not torch.equal(grid[12:18], grid[18:24])
