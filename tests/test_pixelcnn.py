"""The autoregressive models' shared base (pixelcnn.Autoregressive), under PixelCNN and both PixelRNN cells:
causality by gradients, an exact and normalized likelihood, and a step-by-step sampler that agrees with the
parallel forward pass; samples, the 256-level switch, completions, learning and pictures."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import AUTOREGRESSIVE, autoregressive, binary_images

SHAPE = (1, 28, 28)
VARIANTS = list(AUTOREGRESSIVE)
PIXELS = [(0, 0), (0, 5), (5, 0), (13, 27), (14, 13), (27, 27)]  # first, in the first row, first/last of a row, ...


@pytest.mark.parametrize("levels", [2, 256])
@pytest.mark.parametrize("name", VARIANTS)
def test_the_output_at_pixel_i_depends_on_no_pixel_at_or_after_i(name, levels):
    model = autoregressive(name, levels=levels)
    x = binary_images(1) if levels == 2 else torch.rand(1, *SHAPE, dtype=torch.double)
    width = SHAPE[2]
    for r, c in PIXELS:
        x_in = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.logits(x_in)[0, :, r, c].sum(), x_in)
        grad, i = grad.flatten(), r * width + c
        assert torch.all(grad[i:] == 0), f"{name}: logits at {(r, c)} depend on pixel {int(grad[i:].nonzero()[0]) + i}"
        if i > 0:
            assert grad[:i].abs().sum() > 0, f"{name}: logits at {(r, c)} ignore every earlier pixel"


@pytest.mark.parametrize("levels", [2, 256])
@pytest.mark.parametrize("name", VARIANTS)
def test_the_sampler_reproduces_the_parallel_forward_pass(name, levels):
    """Teacher-forced, the pixel-by-pixel sampler (cached features, one pixel per step) gives the same logits.
    A non-square image, so that a mix-up of height and width (the diagonal's skew) cannot pass."""
    shape = (1, 10, 13)
    model = autoregressive(name, shape=shape, levels=levels)
    x = binary_images(3, shape) if levels == 2 else torch.randint(0, 256, (3, *shape)).double() / 255
    same, logits = model._autoregress(x, start=x[0].numel(), keep_logits=True)
    assert torch.equal(same, x)
    torch.testing.assert_close(logits, model.logits(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", VARIANTS)
def test_log_likelihood_is_the_sum_of_per_pixel_bernoulli_log_probs(name):
    model = autoregressive(name)
    x = binary_images(4)
    p = torch.sigmoid(model.logits(x))
    direct = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(model.log_likelihood(x, k=17), direct, rtol=1e-9, atol=1e-9)  # k is ignored


@pytest.mark.parametrize(("name", "levels", "shape"), [(name, 2, (1, 2, 5)) for name in VARIANTS]
                         + [("pixelcnn", 256, (1, 1, 2))])  # the 256-way output is shared code: test it once
def test_probabilities_of_all_possible_images_sum_to_one(name, levels, shape):
    """Exactness, checked whole: enumerate every image of a tiny size (2^10 binary, or 256^2 grey)."""
    model = autoregressive(name, shape=shape, levels=levels)
    values = torch.arange(levels, dtype=torch.double) / (levels - 1)
    images = torch.tensor(list(itertools.product(values.tolist(), repeat=shape[1] * shape[2])), dtype=torch.double)
    log_p = model.log_likelihood(images.view(-1, *shape), k=1)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", VARIANTS)
def test_samples_are_binary_and_reproducible_under_a_seed(name):
    model = autoregressive(name, shape=(1, 8, 8), double=False)
    torch.manual_seed(3)
    a = model.sample(5)
    torch.manual_seed(3)
    b = model.sample(5)
    torch.manual_seed(4)
    c = model.sample(5)
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", VARIANTS)
def test_the_256_level_switch_samples_grey_levels_and_scores_them(name):
    model = autoregressive(name, shape=(1, 8, 8), double=False, levels=256)
    samples = model.sample(4)
    assert samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples * 255, (samples * 255).round())  # multiples of 1/255
    nll = -model.log_likelihood(samples, k=1)
    assert torch.isfinite(nll).all() and (nll > 0).all()
    batch = {"x": (samples * 255).round().to(torch.uint8)}
    losses = model.train().train_step(batch, model.configure_optimizers())
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert set(model.validate(batch)) == {"nll", "bits_per_dim"}


@pytest.mark.parametrize("name", VARIANTS)
def test_completions_keep_the_given_rows(name):
    model = autoregressive(name, shape=(1, 8, 8), double=False)
    x = binary_images(3, (1, 8, 8)).float()
    done = model.complete(x, rows=4)
    assert torch.equal(done[:, :, :4], x[:, :, :4])
    assert set(done.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", VARIANTS)
def test_a_few_steps_learn_a_fixed_image(name):
    """The loss trains: a constant training image becomes far more likely within 30 steps."""
    torch.manual_seed(0)
    model = autoregressive(name, shape=(1, 6, 6), double=False, lr=0.01).train()
    x = torch.zeros(8, 1, 6, 6, dtype=torch.uint8)
    x[:, :, 1:5, 3] = 255  # a vertical bar; binarize() of 0/255 is deterministic
    opt = model.configure_optimizers()
    first = model.train_step({"x": x}, opt)["loss"]
    for _ in range(30):
        last = model.train_step({"x": x}, opt)["loss"]
    assert last < 0.5 * first


@pytest.mark.parametrize("name", VARIANTS)
def test_pictures_show_samples_and_completions(name):
    shape = (1, 8, 8)
    model = autoregressive(name, shape=shape, double=False)
    torch.manual_seed(0)
    grids = model.pictures({"test": torch.rand(100, *shape), "test_y": torch.arange(100) % 10})
    assert set(grids) == {"samples", "completions"}
    assert grids["samples"][0].shape == (100, *shape)
    images, nrow = grids["completions"]
    assert images.shape == (10 * nrow, *shape) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn"])
def test_static_binarization_trains_on_the_fixed_draw(name, tiny_params):
    """binarization static: training reads "xb" (the papers' one binarized MNIST) like the scores do."""
    import dataclasses

    from helpers import CLASSES, SHAPE, images

    from genzoo.models.registry import build_model

    batch = images(n=4)
    config = dataclasses.replace(tiny_params.model(name), binarization="static")
    model = build_model(name, config, SHAPE, CLASSES, seed=0)
    assert torch.equal(model._data(batch, train=True), batch["xb"].float())
    dynamic = build_model(name, tiny_params.model(name), SHAPE, CLASSES, seed=0)
    torch.manual_seed(0)
    draws = [dynamic._data(batch, train=True) for _ in range(2)]
    assert not torch.equal(draws[0], draws[1])  # dynamic: a fresh draw each step


@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn"])
def test_the_papers_rmsprop_is_an_option(name, tiny_params):
    import dataclasses

    from helpers import CLASSES, SHAPE

    from genzoo.models.registry import build_model

    config = dataclasses.replace(tiny_params.model(name), optimizer="rmsprop")
    model = build_model(name, config, SHAPE, CLASSES, seed=0)
    assert isinstance(model.configure_optimizers()["model"], torch.optim.RMSprop)
    ours = build_model(name, tiny_params.model(name), SHAPE, CLASSES, seed=0)
    assert isinstance(ours.configure_optimizers()["model"], torch.optim.Adam)
