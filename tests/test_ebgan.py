"""EBGAN: the pull-away term, the margin loss, the autoencoder D's energy and shapes, the pull-away switch, the
decoder without batch statistics and a reachable default margin. (D first, then G through a frozen D:
tests/test_adversarial.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import SHAPE, images

from genzoo.models import ebgan


def tiny_ebgan(seed=0, **changes) -> ebgan.Model:
    config = ebgan.Config(epochs=1, batch_size=8, noise_dim=8, width=4, code_dim=6, **changes)
    torch.manual_seed(seed)
    return ebgan.Model(config, SHAPE, 10)


def test_pull_away_orthogonal_codes_is_zero_identical_is_one():
    eye = torch.eye(5, 7) * torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0]).unsqueeze(1)  # orthogonal, any lengths
    assert ebgan.pull_away(eye).item() == pytest.approx(0.0, abs=1e-7)
    same_code = torch.randn(1, 7, generator=torch.Generator().manual_seed(0)).repeat(6, 1)
    assert ebgan.pull_away(same_code).item() == pytest.approx(1.0, abs=1e-6)
    assert ebgan.pull_away(same_code * torch.arange(1.0, 7.0).unsqueeze(1)).item() == pytest.approx(1.0, abs=1e-6)
    # two pairs at 60°: cos² = 1/4 within each pair, 0 across -> mean over the 12 ordered pairs = 4 · 1/4 / 12
    codes = torch.tensor([[1.0, 0, 0, 0], [0.5, math.sqrt(3) / 2, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.5, math.sqrt(3) / 2]])
    assert ebgan.pull_away(codes).item() == pytest.approx(1 / 12, abs=1e-6)


def test_margin_loss_is_zero_once_fake_energy_reaches_margin():
    real = torch.tensor([0.1, 0.3])
    fake = torch.tensor([1.0, 2.5], requires_grad=True)  # both >= m = 1
    loss = ebgan.d_loss(real, fake, margin=1.0)
    assert loss.item() == pytest.approx(0.2)  # only D(x)
    loss.backward()
    assert torch.equal(fake.grad, torch.zeros(2))  # D gets nothing from fakes above the margin
    low = torch.tensor([0.25, 2.0], requires_grad=True)
    loss = ebgan.d_loss(real, low, margin=1.0)
    assert loss.item() == pytest.approx(0.2 + 0.75 / 2)
    loss.backward()
    assert torch.allclose(low.grad, torch.tensor([-0.5, 0.0]))


def test_shapes_and_ranges():
    model = tiny_ebgan().eval()
    x = model.sample(5)
    assert x.shape == (5, *SHAPE) and x.min() >= 0 and x.max() <= 1
    z = model.noise(3)
    assert z.shape == (3, 8) and z.abs().max() <= 1 and model.noise_bounds == (-1.0, 1.0)
    assert model.generate(z).shape == (3, *SHAPE)
    energy, code = model.energy(x)
    assert energy.shape == (5,) and code.shape == (5, 6)
    with torch.no_grad():  # the energy: D's per-pixel squared reconstruction error, in D's [-1, 1] space
        x11 = x * 2 - 1
        torch.testing.assert_close(code, model.disc.enc(x11))
        torch.testing.assert_close(energy, (model.disc.dec(code) - x11).pow(2).flatten(1).mean(1))
    out = model.validate(images(6))
    assert set(out) == {"energy_real", "energy_fake", "loss_d", "pull_away"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    with pytest.raises(ValueError):
        ebgan.Model(model.config, (1, 32, 32), 10)


def test_pull_away_switch_changes_g_update_only_through_the_term():
    grads = {}
    for pt in (True, False):
        model = tiny_ebgan(pull_away=pt).train()
        opts = model.configure_optimizers()
        torch.manual_seed(3)
        out = model.train_step(images(8), opts)
        assert {"loss_d", "loss_g_adv", "pull_away", "grad_norm_g", "energy_real", "energy_fake"} <= set(out)
        grads[pt] = out["grad_norm_g"]
        assert out["pull_away"] > 0
    assert not torch.equal(grads[True], grads[False])
    model = tiny_ebgan(pull_away=True, pt_weight=0.0).train()
    torch.manual_seed(3)
    assert torch.allclose(model.train_step(images(8), model.configure_optimizers())["grad_norm_g"], grads[False])


def test_decoder_has_no_batch_statistics():
    # regression: with batch-statistics BatchNorm in the decoder, a fake's reconstruction (the energy G descends)
    # depended on its batch mates; the decoder must rebuild each image from its own code alone
    for bn in (True, False):
        model = tiny_ebgan(disc_batchnorm=bn).train()
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.disc.dec.modules())
        codes = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.allclose(model.disc.dec(codes)[:2], model.disc.dec(codes[:2]), atol=1e-6)
    model = tiny_ebgan(disc_batchnorm=False).train()  # without the encoder's BatchNorm, energies are per-sample
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.energy(x)[0][:2], model.energy(x[:2])[0], atol=1e-6)


def test_default_margin_is_reachable_on_the_per_pixel_scale():
    # regression: m = 1 on the per-pixel MSE in [-1, 1] is the energy of a mid-grey image against a perfect
    # all-background reconstruction, ~20x a digit's reconstruction error: fakes never reached it, D's margin
    # term never saturated and G stayed grey noise on MNIST. The default must sit well below that junk energy.
    model = tiny_ebgan().eval()
    last = model.disc.dec[-2]  # the decoder's last layer, before its tanh
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, -20.0)  # a perfect all-background reconstruction: tanh(-20) = -1
    with torch.no_grad():
        junk = model.energy(torch.full((1, *SHAPE), 0.5))[0].item()  # a mid-grey image (0 in D's [-1, 1])
    assert junk == pytest.approx(1.0)  # per pixel (a sum over the pixels would give 784)
    assert ebgan.Config().margin <= junk / 4
    # an energy at the default margin gives D nothing from the fake, one just below it does
    fake = torch.tensor([ebgan.Config().margin, ebgan.Config().margin * 0.5], requires_grad=True)
    ebgan.d_loss(torch.zeros(2), fake, ebgan.Config().margin).backward()
    assert torch.equal(fake.grad, torch.tensor([0.0, -0.5]))
