"""The conditional VAE: the label reaches encoder and decoder, balanced sampling, only conditional likelihoods
(the IWAE bound given y), its extra scores and pictures, and the per-label MMD term."""

from __future__ import annotations

import pytest
import torch
from helpers import CLASSES, SHAPE, band_images

from genzoo.engine.training import seed_everything
from genzoo.models import blocks, cvae


def build(seed: int = 0, **overrides) -> cvae.Model:
    small = {"latent_dim": 2, "hidden": [32], "eval_k": 10, "eval_images": 20}
    config = cvae.Config(epochs=1, batch_size=32, **{**small, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cvae.Model(config, SHAPE, CLASSES)


class ConstantEvaluator:
    """Stands in for the frozen evaluator: calls every image a 0."""

    def predict(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x01), dtype=torch.long)


def test_cvae_decoder_depends_on_the_label():
    model = build().eval()
    z = torch.randn(4, model.config.latent_dim)
    three, five = model.decode(z, torch.full((4,), 3)), model.decode(z, torch.full((4,), 5))
    assert three.shape == (4, 784) and not torch.allclose(three, five)
    mean_3, _ = model.encode(band_images(4)["x"].float() / 255, torch.full((4,), 3))
    mean_5, _ = model.encode(band_images(4)["x"].float() / 255, torch.full((4,), 5))
    assert not torch.allclose(mean_3, mean_5)  # the encoder sees the label too
    swapped = model.swap_labels(band_images(2)["x"].float() / 255, torch.tensor([3, 4]))
    assert swapped.shape == (2, CLASSES, *SHAPE)
    assert not torch.allclose(swapped[:, 0], swapped[:, 1])  # same style, other digit -> other image


def test_cvae_sampling_shapes_and_balanced_labels():
    model = build().eval()
    given = model.sample_given(torch.tensor([3, 3, 7]))
    assert given.shape == (3, *SHAPE) and given.min() >= 0 and given.max() <= 1
    torch.manual_seed(0)
    drawn = model.sample(23)
    torch.manual_seed(0)
    assert torch.equal(drawn, model.sample_given(torch.arange(23) % CLASSES))  # labels cycle 0..9


def test_cvae_has_only_conditional_likelihoods():
    """The evaluate stage calls `elbo(x)` / `log_likelihood(x, k)` without labels: the CVAE must not declare them."""
    assert cvae.Model.likelihood is None and cvae.Model.conditional and cvae.Model.samples
    with pytest.raises(NotImplementedError):
        cvae.Model.log_likelihood(None, torch.zeros(1, *SHAPE), 1)


def test_cvae_iwae_bound_is_at_least_the_elbo_and_tightens_with_k():
    seed_everything(0)
    model = build().eval()
    with torch.no_grad():  # a posterior far from the prior, as after training: importance weights that differ
        model.encoder[-1].bias[:model.config.latent_dim] += 2.0
    data = band_images(64)
    xb, y = data["xb"].float(), data["y"]
    elbo = torch.stack([model.elbo_given(xb, y)["elbo"].mean() for _ in range(20)]).mean()
    iwae_1 = torch.stack([model.log_likelihood_given(xb, y, k=1).mean() for _ in range(20)]).mean()
    iwae_50 = model.log_likelihood_given(xb, y, k=50).mean()
    iwae_500 = model.log_likelihood_given(xb, y, k=500).mean()
    assert iwae_1 == pytest.approx(elbo.item(), rel=0.02)  # k = 1 *is* the ELBO
    assert iwae_50 > elbo and iwae_500 > iwae_50
    log_p = model.log_likelihood_given(xb[:8], y[:8], k=7)
    assert log_p.shape == (8,) and torch.isfinite(log_p).all() and (log_p <= 0).all()


def test_cvae_iwae_chunking_does_not_change_the_bound(monkeypatch):
    model = build().eval()
    data = band_images(4)
    torch.manual_seed(0)
    whole = model.log_likelihood_given(data["xb"].float(), data["y"], k=2000)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 4 * 784 * 7)  # 7 samples per chunk
    chunked = model.log_likelihood_given(data["xb"].float(), data["y"], k=2000)
    torch.testing.assert_close(whole, chunked, atol=0.3, rtol=0)  # Monte Carlo noise only


def test_cvae_train_step_uses_the_labels():
    seed_everything(0)
    a, b = build().train(), build().train()
    data = band_images(8)
    seed_everything(0)
    a.train_step(data, a.configure_optimizers())
    seed_everything(0)
    b.train_step({**data, "y": (data["y"] + 1) % CLASSES}, b.configure_optimizers())
    assert not torch.equal(a.encoder[0].weight, b.encoder[0].weight)


def test_cvae_extra_scores_and_pictures():
    seed_everything(0)
    model = build().eval()
    test = band_images(30, seed=1)
    scores = model.extra_scores({"train": band_images(20), "val": test, "test": test, "labelled": torch.arange(10)},
                                ConstantEvaluator())
    assert scores["conditional_nll_images"] == 20 and scores["conditional_nll_k"] == 10
    assert scores["test_conditional_nll"] > 0 and scores["test_conditional_nll_stderr"] > 0  # 20 images, not all alike
    assert scores["label_agreement"] == pytest.approx(0.1)  # only the requested 0s agree with "always 0"
    assert scores["label_agreement_worst_class"] == 0.0
    data = {"test": test["x"].float() / 255, "test_y": test["y"], "train": band_images(20)["x"]}
    grids = model.pictures(data)
    swap, nrow = grids["label_swap"]
    assert nrow == CLASSES + 1 and swap.shape == (CLASSES * (CLASSES + 1), *SHAPE)
    assert torch.equal(swap[0], data["test"][3])  # the first row starts with the first 3 of the test digits
    samples, nrow = grids["samples_by_class"]
    assert nrow == 10 and samples.shape == (CLASSES * 10, *SHAPE)
    assert samples.min() >= 0 and samples.max() <= 1


# ---- the per-label MMD term ------------------------------------------------------------------------------------

def label_mmd_by_loop(z: torch.Tensor, y: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The textbook unbiased MMD², one label at a time with boolean indexing, against the same prior draws."""
    def offdiag_mean(k):
        return (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))
    terms = []
    for c in y.unique():
        zc = z[y == c]
        if len(zc) >= 2:
            terms.append(offdiag_mean(cvae.imq_kernel(zc, zc)) + offdiag_mean(cvae.imq_kernel(prior, prior))
                         - 2 * cvae.imq_kernel(zc, prior).mean())
    return torch.stack(terms).mean()


def test_label_mmd_matches_the_per_label_loop_and_skips_lonely_labels():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(23, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0] * 9 + [1] * 8 + [2] * 5 + [3])  # label 3 has a single code: left out, no NaN
    torch.manual_seed(5)
    masked = cvae.label_mmd(z, (y[:, None] == torch.arange(5)).double())  # label 4 absent
    torch.manual_seed(5)
    prior = torch.randn_like(z)  # the draws label_mmd made
    torch.testing.assert_close(masked, label_mmd_by_loop(z, y, prior))


def test_label_mmd_is_near_zero_for_prior_codes_and_large_when_codes_tell_the_label():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(512) % CLASSES
    one_hot = (y[:, None] == torch.arange(CLASSES)).float()
    independent = torch.randn(512, 8, generator=gen)
    telling = independent + 3 * torch.eye(8)[y % 8]  # each label shifts the codes along its own axis
    torch.manual_seed(0)
    unbiased = torch.stack([cvae.label_mmd(torch.randn(512, 8, generator=gen), one_hot) for _ in range(50)])
    assert abs(unbiased.mean()) < 3 * unbiased.std() / 50 ** 0.5 + 1e-4  # unbiased: zero mean under the null
    assert cvae.label_mmd(telling, one_hot) > 20 * cvae.label_mmd(independent, one_hot).abs()


def test_cvae_label_mmd_weight_reaches_the_encoder_and_is_logged():
    data = band_images(40)
    outs, weights = {}, {}
    for w in (0.0, 100.0):
        seed_everything(0)
        model = build(label_mmd_weight=w).train()
        seed_everything(1)
        outs[w] = model.train_step(data, model.configure_optimizers())
        weights[w] = model.encoder[0].weight.detach().clone()
    assert "penalty" not in outs[0.0] and float(outs[100.0]["penalty"]) > 0
    assert not torch.equal(weights[0.0], weights[100.0])
