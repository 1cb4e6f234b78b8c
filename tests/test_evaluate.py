"""The evaluate stage (genzoo.stages.evaluate) checks what it is asked to score before any work."""

from __future__ import annotations

import pytest
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
