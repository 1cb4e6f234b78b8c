"""pipeline/gpu_models.py plans each model's epochs from its measured speed; evaluate can score a subset."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

from genzoo.errors import GenzooError
from genzoo.evaluate import evaluate_stage
from genzoo.params import load_params
from genzoo.tracking import git_state

sys.path.insert(0, str(ROOT / "pipeline"))
from gpu_models import SAFETY, plan_epochs  # noqa: E402


def test_plan_keeps_the_profile_epochs_when_they_fit():
    assert plan_epochs(60, steps_per_s=200.0, steps_per_epoch=859, seconds=1000.0) == 60


def test_plan_caps_the_epochs_to_the_share_of_the_budget():
    # 100 s at 1000 steps/s, 430 steps an epoch: 232 epochs of time, SAFETY of it planned
    assert plan_epochs(1000, 1000.0, 430, 100.0) == int(SAFETY * 100 * 1000 / 430)
    assert plan_epochs(1000, 1.0, 430, 10.0) == 1  # never zero epochs


def test_evaluate_refuses_an_unknown_model_before_loading_anything(tmp_path):
    with pytest.raises(GenzooError, match="unknown model"):
        evaluate_stage(load_params(ROOT / "params.yaml"), tmp_path, tmp_path, tmp_path, only=["vea"])


def test_genzoo_commit_names_the_commit_of_a_copied_tree(monkeypatch):
    named = "f" * 40  # no commit of this repository
    monkeypatch.setenv("GENZOO_COMMIT", named)
    assert git_state(ROOT) == {"commit": named, "dirty": None}
    monkeypatch.delenv("GENZOO_COMMIT")
    assert git_state(ROOT)["commit"] != named
