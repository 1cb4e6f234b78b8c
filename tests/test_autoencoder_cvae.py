"""Model-specific checks of the autoencoder (+ few-label classifier) and the conditional VAE."""

from __future__ import annotations

import pytest
import torch

import genzoo.metrics.few_labels as few_labels
from genzoo.metrics.few_labels import few_label_accuracy
from genzoo.models import autoencoder, blocks, cvae
from genzoo.training import seed_everything

SHAPE, CLASSES = (1, 28, 28), 10


def images(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Digit-free but structured images: class c lights up its own band of rows, so labels mean something."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = torch.rand(n, *SHAPE, generator=gen) * 0.2
    for i, c in enumerate(y.tolist()):
        x[i, :, 2 * c + 4:2 * c + 7] = 0.9
    x = (x * 255).to(torch.uint8)
    return {"x": x, "y": y, "xb": torch.bernoulli(x.float() / 255, generator=gen).to(torch.uint8)}


def build(module, seed: int = 0, **overrides):
    small = {"autoencoder": dict(code_dim=8, hidden=[32]),
             "cvae": dict(latent_dim=2, hidden=[32], eval_k=10, eval_images=20)}[module.__name__.rsplit(".", 1)[-1]]
    config = module.Config(epochs=1, batch_size=32, **{**small, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return module.Model(config, SHAPE, CLASSES)


class ConstantEvaluator:
    """Stands in for the frozen evaluator: calls every image a 0."""

    def predict(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x01), dtype=torch.long)


@pytest.fixture
def small_classifier(monkeypatch):
    """The few-label classifier at a test's size: these tests check plumbing, not the protocol's numbers."""
    monkeypatch.setattr(few_labels, "HIDDEN", 32)
    monkeypatch.setattr(few_labels, "STEPS", 150)


# ---- few-label classifier -------------------------------------------------------------------------------------

def toy_features(n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    features = 3 * torch.eye(CLASSES)[y].repeat(1, 2) + 0.3 * torch.randn(n, 2 * CLASSES, generator=gen)
    return features, y


def test_few_label_classifier_separates_a_toy_from_its_labelled_rows_only(small_classifier):
    features, y = toy_features()
    test_features, test_y = toy_features(500, seed=1)
    labelled = torch.arange(100, 1000, 9)[:100]  # 100 rows, 10 per class (9 and 10 are coprime)
    accuracy = few_label_accuracy(features, y, labelled, test_features, test_y, CLASSES)
    assert accuracy >= 0.99
    # The unlabelled rows are never read: scramble their labels and features, the result is the same.
    rest = torch.ones(1000, dtype=torch.bool)
    rest[labelled] = False
    y2, features2 = y.clone(), features.clone()
    y2[rest] = (y[rest] + 3) % CLASSES
    features2[rest] = torch.randn(int(rest.sum()), features.shape[1])
    assert few_label_accuracy(features2, y2, labelled, test_features, test_y, CLASSES) == accuracy
    # Seeded: the global RNG stream neither changes it nor is changed by it.
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert few_label_accuracy(features, y, labelled, test_features, test_y, CLASSES) == accuracy
    assert torch.equal(torch.get_rng_state(), state)
    # The labelled rows alone (labelled=None) give the same classifier.
    assert few_label_accuracy(features[labelled], y[labelled], None, test_features, test_y, CLASSES) == accuracy


# ---- autoencoder ------------------------------------------------------------------------------------------------

def test_autoencoder_has_no_sampler_and_reconstructs_into_the_unit_range():
    model = build(autoencoder).eval()
    assert not hasattr(model, "sample") and not hasattr(model, "log_likelihood")
    x01 = images(6)["x"].float() / 255
    out = model(x01)
    assert out.shape == (6, *SHAPE) and out.min() >= 0 and out.max() <= 1
    grids = model.pictures({"test": x01, "test_y": torch.arange(6), "train": images(6)["x"]})
    assert set(grids) == {"reconstructions"} and grids["reconstructions"][0].shape == (12, *SHAPE)
    assert torch.equal(grids["reconstructions"][0][0::2], x01)  # real, recon, real, recon, ...


def test_autoencoder_learns_to_reconstruct_a_small_batch():
    seed_everything(0)
    model = build(autoencoder, lr=3e-3).train()
    opt, data = model.configure_optimizers(), images(32)
    first = model.train_step(data, opt)["loss"]
    for _ in range(60):
        last = model.train_step(data, opt)["loss"]
    assert last < 0.6 * first


def test_autoencoder_extra_scores_on_tiny_data(small_classifier):
    seed_everything(0)
    model = build(autoencoder).eval()
    train, test = images(200, seed=0), images(50, seed=1)
    labelled = torch.arange(100, 150)  # 50 labels, 5 per class
    scores = model.extra_scores({"train": train, "val": test, "test": test, "labelled": labelled}, None)
    assert set(scores) == {"recon_bce", "recon_mse", "codes_accuracy", "pixels_accuracy", "labelled"}
    assert 0 < scores["recon_bce"] < 784 * 2 and 0 < scores["recon_mse"] < 1 and scores["labelled"] == 50
    assert 0 <= scores["codes_accuracy"] <= 1
    assert scores["pixels_accuracy"] >= 0.9  # the classes are bands of bright rows: trivially separable
    # Only the labelled training rows count: relabel all the others and nothing moves.
    train["y"][:100] = 0
    assert model.extra_scores({"train": train, "val": test, "test": test, "labelled": labelled}, None) == scores


# ---- conditional VAE ---------------------------------------------------------------------------------------------

def test_cvae_decoder_depends_on_the_label():
    model = build(cvae).eval()
    z = torch.randn(4, model.config.latent_dim)
    three, five = model.decode(z, torch.full((4,), 3)), model.decode(z, torch.full((4,), 5))
    assert three.shape == (4, 784) and not torch.allclose(three, five)
    mean_3, _ = model.encode(images(4)["x"].float() / 255, torch.full((4,), 3))
    mean_5, _ = model.encode(images(4)["x"].float() / 255, torch.full((4,), 5))
    assert not torch.allclose(mean_3, mean_5)  # the encoder sees the label too
    swapped = model.swap_labels(images(2)["x"].float() / 255, torch.tensor([3, 4]))
    assert swapped.shape == (2, CLASSES, *SHAPE)
    assert not torch.allclose(swapped[:, 0], swapped[:, 1])  # same style, other digit -> other image


def test_cvae_sampling_shapes_and_balanced_labels():
    model = build(cvae).eval()
    given = model.sample_given(torch.tensor([3, 3, 7]))
    assert given.shape == (3, *SHAPE) and given.min() >= 0 and given.max() <= 1
    torch.manual_seed(0)
    drawn = model.sample(23)
    torch.manual_seed(0)
    assert torch.equal(drawn, model.sample_given(torch.arange(23) % CLASSES))  # labels cycle 0..9


def test_cvae_has_only_conditional_likelihoods():
    """The evaluate stage calls `elbo(x)` / `log_likelihood(x, k)` without labels: the CVAE must not offer them."""
    assert not hasattr(cvae.Model, "elbo") and not hasattr(cvae.Model, "log_likelihood")


def test_cvae_iwae_bound_is_at_least_the_elbo_and_tightens_with_k():
    seed_everything(0)
    model = build(cvae).eval()
    with torch.no_grad():  # a posterior far from the prior, as after training: importance weights that differ
        model.encoder[-1].bias[:model.config.latent_dim] += 2.0
    data = images(64)
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
    model = build(cvae).eval()
    data = images(4)
    torch.manual_seed(0)
    whole = model.log_likelihood_given(data["xb"].float(), data["y"], k=2000)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 4 * 784 * 7)  # 7 samples per chunk
    chunked = model.log_likelihood_given(data["xb"].float(), data["y"], k=2000)
    torch.testing.assert_close(whole, chunked, atol=0.3, rtol=0)  # Monte Carlo noise only


def test_cvae_train_step_uses_the_labels():
    seed_everything(0)
    a, b = build(cvae).train(), build(cvae).train()
    data = images(8)
    seed_everything(0)
    a.train_step(data, a.configure_optimizers())
    seed_everything(0)
    b.train_step({**data, "y": (data["y"] + 1) % CLASSES}, b.configure_optimizers())
    assert not torch.equal(a.encoder[0].weight, b.encoder[0].weight)


def test_cvae_extra_scores_and_pictures():
    seed_everything(0)
    model = build(cvae).eval()
    test = images(30, seed=1)
    scores = model.extra_scores({"train": images(20), "val": test, "test": test, "labelled": torch.arange(10)},
                                ConstantEvaluator())
    assert scores["conditional_nll_images"] == 20 and scores["conditional_nll_k"] == 10
    assert scores["test_conditional_nll"] > 0 and scores["test_conditional_nll_stderr"] >= 0
    assert scores["label_agreement"] == pytest.approx(0.1)  # only the requested 0s agree with "always 0"
    assert scores["label_agreement_worst_class"] == 0.0
    data = {"test": test["x"].float() / 255, "test_y": test["y"], "train": images(20)["x"]}
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
    data = images(40)
    outs, weights = {}, {}
    for w in (0.0, 100.0):
        seed_everything(0)
        model = build(cvae, label_mmd_weight=w).train()
        seed_everything(1)
        outs[w] = model.train_step(data, model.configure_optimizers())
        weights[w] = model.encoder[0].weight.detach().clone()
    assert "penalty" not in outs[0.0] and float(outs[100.0]["penalty"]) > 0
    assert not torch.equal(weights[0.0], weights[100.0])
