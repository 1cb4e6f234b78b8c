"""EnhanceNet (×4 super-resolution): bicubic plus a learned residual, the Gram matrix, the perceptual and texture
losses through the frozen perceptual network (never the evaluator), the pixel (ENet-E) and PAT modes, pictures,
scores against bicubic, and the comparison figure. (D first, then G through a frozen D: tests/test_adversarial.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import ROOT, same, superres_batch, tiny_evaluator, tiny_perceptual, weights
from torch import nn

from genzoo.models import enhancenet


def tiny_enhancenet(**kw) -> enhancenet.Model:
    torch.manual_seed(0)
    return enhancenet.Model(enhancenet.Config(width=8, blocks=1, disc_width=4, **kw))


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
    model.attach_perceptual(tiny_perceptual())
    x = superres_batch(4)["b"].float() / 255
    zero = model.perceptual_losses(x, x.clone())
    assert float(zero["loss_perceptual"]) == 0 and float(zero["loss_texture"]) == 0
    other = model.perceptual_losses(x, x.flip(-1))
    assert float(other["loss_perceptual"]) > 0 and float(other["loss_texture"]) > 0


def test_pixel_mode_needs_no_perceptual_network_and_perceptual_mode_does():
    pixel, batch = tiny_enhancenet(loss="pixel"), superres_batch()
    assert pixel.disc is None
    before = weights(pixel.gen)
    losses = pixel.train_step(batch, pixel.configure_optimizers())
    assert not same(before, weights(pixel.gen)) and math.isfinite(float(losses["loss_g"]))
    perceptual = tiny_enhancenet()
    with pytest.raises(RuntimeError, match="attach_perceptual"):
        perceptual.train_step(batch, perceptual.configure_optimizers())


def test_a_missing_perceptual_network_names_the_stage_that_trains_it(tmp_path):
    from genzoo.engine.errors import GenzooError
    from genzoo.models.registry import save_model
    from genzoo.stages.train import attach_perceptual

    model, pixel = tiny_enhancenet(), tiny_enhancenet(loss="pixel")
    for models in (None, tmp_path):
        with pytest.raises(GenzooError, match=r"enhancenet trains through the frozen perceptual network: run "
                                              r"`dvc repro train_perceptual` first"):
            attach_perceptual("enhancenet", model, models, "cpu")
    attach_perceptual("enhancenet_mse", pixel, None, "cpu")  # the pixel loss looks through no network
    network = tiny_perceptual()
    save_model(network, "perceptual", tmp_path / "perceptual" / "model.pt")
    attach_perceptual("enhancenet", model, tmp_path, "cpu")
    assert math.isfinite(float(model.train_step(superres_batch(), model.configure_optimizers())["loss_g"]))


def test_only_the_perceptual_loss_makes_a_stage_depend_on_the_perceptual_network():
    from genzoo.stages.train import models_used
    from genzoo.tools.dag import render

    assert models_used({"enhancenet_mse": {"loss": "pixel"}}, "enhancenet_mse") == ["enhancenet_mse", "evaluator"]
    assert models_used({"enhancenet_mse": {"loss": "perceptual"}}, "enhancenet_mse")[-1] == "perceptual"
    assert models_used({"enhancenet": {}}, "enhancenet")[-1] == "perceptual"  # the Config's default loss
    items = yaml.safe_load(render(ROOT / "dvc.yaml", ROOT / "params.yaml"))["stages"]["train_translation"]["foreach"]
    assert items["enhancenet"]["network"] == "models/perceptual"  # ENet-PAT waits for and reruns on it
    assert items["enhancenet_mse"]["network"] == "models/evaluator"  # ENet-E (pixel loss) does not
    assert "src/genzoo/models/perceptual.py" not in items["enhancenet_mse"].values()


def test_enhancenet_perceptual_network_stays_frozen_and_out_of_the_state_dict():
    model, ev = tiny_enhancenet(), tiny_perceptual()
    ev_before = weights(ev)
    model.attach_perceptual(ev)
    model.train()
    assert not ev.training and not any(p.requires_grad for p in ev.parameters())
    assert not any("perceptual" in k for k in model.state_dict())
    opt = model.configure_optimizers()
    model.train_step(superres_batch(), opt)
    assert same(ev_before, weights(ev))
    assert model.to(torch.float64)._perceptual.body[0][0].weight.dtype == torch.float64  # follows the model


def test_enhancenet_pat_loss_g_is_the_weighted_adversarial_term_plus_perceptual_and_texture():
    model = tiny_enhancenet()
    model.attach_perceptual(tiny_perceptual())
    losses = model.train_step(superres_batch(), model.configure_optimizers())
    assert {"loss_d", "loss_g_adv", "loss_perceptual", "loss_texture", "loss_g", "mse"} <= set(losses)
    expected = model.config.w_adv * losses["loss_g_adv"] + losses["loss_perceptual"] + losses["loss_texture"]
    torch.testing.assert_close(losses["loss_g"], expected)


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


def test_enhancenet_comparison_rows_are_input_bicubic_mse_perceptual_truth():
    """The cross-model picture the evaluate stage draws (the paper's figure): five rows of the same test digits."""
    from genzoo.data.derived import bicubic_upsample

    test = superres_batch(n=6)
    pixel, perceptual = tiny_enhancenet(loss="pixel").eval(), tiny_enhancenet(loss="pixel").eval()
    torch.nn.init.constant_(list(perceptual.parameters())[-1], 0.3)  # make the two models differ
    assert enhancenet.Model.comparison == ("enhancenet_mse", "enhancenet")  # pixel (ENet-E) first
    grids = enhancenet.Model.comparison_pictures({"enhancenet_mse": pixel, "enhancenet": perceptual}, test, n=6)
    grid, nrow = grids["enhancenet"]
    assert set(grids) == {"enhancenet"} and nrow == 6
    assert grid.shape == (30, 1, 28, 28) and grid.min() >= 0 and grid.max() <= 1
    torch.testing.assert_close(grid[6:12], bicubic_upsample(test["a"]))
    torch.testing.assert_close(grid[12:18], pixel.translate({"a": test["a"]}))
    torch.testing.assert_close(grid[18:24], perceptual.translate({"a": test["a"]}))
    torch.testing.assert_close(grid[24:], test["b"].float() / 255)
    assert not torch.equal(grid[12:18], grid[18:24])


@pytest.mark.parametrize("profile", ["cpu", "gpu", "tiny"])
def test_the_mse_ablation_has_the_perceptual_models_generator_in_every_profile(tmp_path, profile):
    """The perceptual-vs-MSE comparison (ENet-PAT vs ENet-E) is about the loss: a profile that gives the two
    different generators compares their sizes instead."""
    from helpers import composed

    params = composed(tmp_path, f"profile={profile}")
    shape = [{k: params[name][k] for k in ("width", "blocks")} for name in ("enhancenet", "enhancenet_mse")]
    assert shape[0] == shape[1], f"{profile}: enhancenet {shape[0]}, enhancenet_mse {shape[1]}"
