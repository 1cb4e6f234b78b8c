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
