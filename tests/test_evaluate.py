"""The evaluate stage (genzoo.stages.evaluate) checks what it is asked to score before any work."""

from __future__ import annotations

import pytest
import torch
from helpers import ROOT

from genzoo.engine.errors import GenzooError
from genzoo.models.registry import load_params
from genzoo.stages.evaluate import evaluate_stage


def test_evaluate_refuses_an_unknown_model_before_loading_anything(tmp_path):
    with pytest.raises(GenzooError, match="unknown model"):
        evaluate_stage(load_params(ROOT / "params.yaml"), tmp_path, tmp_path, tmp_path, only=["vea"])


def test_a_likelihood_records_how_the_models_training_digits_were_binarized(tiny_params):
    """The coverage a paper's NLL needs (`binarization: fixed` in targets.yaml) is read off the model's own config,
    whichever command trained it."""
    import dataclasses

    from helpers import CLASSES, SHAPE, images

    from genzoo.models.registry import build_model
    from genzoo.stages.evaluate import score_likelihood

    test = images(n=4)
    static = dataclasses.replace(tiny_params.model("pixelcnn"), binarization="static")
    cases = [("pixelcnn", static, "fixed"), ("pixelcnn", tiny_params.model("pixelcnn"), "dynamic"),
             ("vae", tiny_params.model("vae"), "dynamic")]
    for name, config, expected in cases:
        scores = score_likelihood(build_model(name, config, SHAPE, CLASSES, seed=0), test, tiny_params)
        assert scores["train_binarization"] == expected and "test_nll" in scores
    gan = build_model("gan", tiny_params.model("gan"), SHAPE, CLASSES, seed=0)
    assert "train_binarization" not in score_likelihood(gan, test, tiny_params)  # no likelihood, nothing to say


def test_binary_samples_are_held_to_the_binarized_test_images(tiny_processed, tiny_params):
    """PixelCNN's samples are 0/1 pixels: scored against the grey test images, binarizing alone would cost them
    (the test images' own binarization is far from the grey originals); against the fixed binarization it does not."""
    from helpers import CLASSES, SHAPE

    from genzoo.data.loading import load_split
    from genzoo.models.registry import EVALUATOR, build_model
    from genzoo.stages.evaluate import Reference, sample_scores

    torch.manual_seed(0)
    evaluator = build_model(EVALUATOR, tiny_params.model(EVALUATOR), SHAPE, CLASSES, seed=0).eval()
    test, val = load_split(tiny_processed, "test"), load_split(tiny_processed, "val")
    reference = Reference(evaluator, test, val, tiny_params)
    own_binarization = test["xb"].float()
    as_binary = reference.score(own_binarization, CLASSES, binary=True)
    as_grey = reference.score(own_binarization, CLASSES)
    assert (as_binary["reference"], as_grey["reference"]) == ("binarized", "grey")
    assert as_binary["fd"] < 0.01 * as_grey["fd"] and as_binary["precision"] > as_grey["precision"]

    pixelcnn = build_model("pixelcnn", tiny_params.model("pixelcnn"), SHAPE, CLASSES, seed=0)
    vae = build_model("vae", tiny_params.model("vae"), SHAPE, CLASSES, seed=0)
    assert pixelcnn.binary_samples and not vae.binary_samples
    samples = own_binarization[:60]
    assert sample_scores(pixelcnn, samples, reference, test, tiny_params, CLASSES)["reference"] == "binarized"
    assert sample_scores(vae, samples, reference, test, tiny_params, CLASSES)["reference"] == "grey"


def test_a_partial_bound_scores_a_seeded_random_subset_and_its_elbo_the_same_images(tiny_processed, tiny_params):
    """MNIST's test file is ordered (its first half the cleaner digits): a partial IWAE bound takes a seeded random
    subset of `iwae_images`, not the first ones, and the ELBO beside it is of the same images."""
    from helpers import CLASSES, SHAPE

    from genzoo.data.loading import load_split, seeded_subset
    from genzoo.metrics.likelihood import test_elbo
    from genzoo.models.registry import build_model
    from genzoo.stages.evaluate import score_likelihood

    test = load_split(tiny_processed, "test")
    n = tiny_params.evaluate.iwae_images
    assert 0 < n < len(test["y"])
    subset = seeded_subset(test, n, tiny_params.run.seed)
    assert len(subset["y"]) == n and not torch.equal(subset["xb"], test["xb"][:n])
    vae = build_model("vae", tiny_params.model("vae"), SHAPE, CLASSES, seed=0)
    scores = score_likelihood(vae, test, tiny_params)
    torch.manual_seed(tiny_params.run.seed)
    assert scores["test_elbo"] == test_elbo(vae, subset["xb"], tiny_params.evaluate.batch_size)
    assert scores["test_images"] == n
    assert score_likelihood(build_model("gan", tiny_params.model("gan"), SHAPE, CLASSES, seed=0), test,
                            tiny_params) == {}  # a model without a likelihood: nothing scored, no subset drawn


def test_a_protocol_names_a_partial_count_as_a_seeded_subset_and_a_whole_split_as_all():
    from genzoo.data.loading import subset_words

    assert subset_words(1000, 10000) == "1000 (a seeded random subset)"
    assert subset_words(0, 10000) == subset_words(10000, 10000) == subset_words(20000, 10000) == "all"
