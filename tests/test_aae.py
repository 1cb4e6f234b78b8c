"""The adversarial autoencoder: what each phase's optimizer holds, the prior it samples, D's accuracy, the code
scatter, and aae_2d. (Its update order, reconstruction, then D on codes, then the encoder as generator through a
frozen D, is checked with the other adversarial models in tests/test_adversarial.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import SHAPE, composed, images

from genzoo.models import aae
from genzoo.models.blocks import to_unit
from genzoo.models.registry import GENERATIVE, parse_params


def tiny_aae(seed=0, **changes):
    config = aae.Config(**{"latent_dim": 2, "hidden": [16], "disc_hidden": [8], "paper_init": False, **changes})
    torch.manual_seed(seed)
    return aae.Model(config, SHAPE, 10)


def test_aae_optimizers_hold_only_their_phase_parameters():
    model = tiny_aae()
    opts = model.configure_optimizers()
    held = {name: {id(p) for group in opt.param_groups for p in group["params"]} for name, opt in opts.items()}
    ids = {name: {id(p) for p in net.parameters()} for name, net in
           (("encoder", model.encoder), ("decoder", model.decoder), ("disc", model.disc))}
    assert held["ae"] == ids["encoder"] | ids["decoder"]
    assert held["disc"] == ids["disc"]
    assert held["gen"] == ids["encoder"]


def test_aae_samples_decode_the_prior_and_validate_reports_d_accuracy():
    model = tiny_aae(prior_std=5.0).eval()
    torch.manual_seed(0)
    z = model.prior(20000)
    assert z.std().item() == pytest.approx(5.0, rel=0.03)
    samples = model.sample(6)
    assert samples.shape == (6, *SHAPE) and samples.min() >= 0 and samples.max() <= 1
    batch = images(10)
    torch.manual_seed(1)
    values = model.validate(batch)
    assert set(values) == {"rec", "d_acc", "loss_d"}
    torch.manual_seed(1)  # D's accuracy: prior draws called real (logit > 0), the batch's codes called fake
    with torch.no_grad():
        real, fake = model.disc(model.prior(10)), model.disc(model.encode(to_unit(batch["x"])))
    expected = 0.5 * ((real > 0).float().mean() + (fake <= 0).float().mean())
    assert values["d_acc"] == expected


def test_aae_pictures_include_the_code_scatter_only_for_a_2d_code():
    data = {"test": torch.rand(60, *SHAPE), "test_y": torch.arange(60) % 10, "train": images(20)["x"]}
    grids = tiny_aae().eval().pictures(data)
    assert set(grids) == {"samples", "reconstructions", "codes"}
    scatter, nrow = grids["codes"]
    assert scatter.ndim == 4 and scatter.shape[:2] == (1, 3) and nrow == 1
    assert 0 <= scatter.min() and scatter.max() <= 1
    assert "codes" not in tiny_aae(latent_dim=3).eval().pictures(data)


@pytest.mark.parametrize("profile", ["cpu", "gpu", "tiny"])
def test_aae_2d_is_the_aae_with_a_2d_code_so_its_stage_draws_the_scatter(tmp_path, profile):
    """The issue's picture needs a 2-D code; the likelihood AAE keeps the paper's 8: a second name, as flow_vae_deep."""
    params = parse_params(composed(tmp_path, f"profile={profile}"))
    assert GENERATIVE["aae_2d"] is GENERATIVE["aae"]
    assert params.model("aae_2d").latent_dim == 2
    if profile != "tiny":  # the tiny profile draws the scatter of `aae` itself
        assert params.model("aae").latent_dim == 8
