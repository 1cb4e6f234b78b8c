"""The gan_saturation stage: G's gradient norm under both losses, from the same start, and its summary."""

from __future__ import annotations

import csv
import json

import pytest

from genzoo.stages.gan_saturation import gan_saturation_stage


def test_gan_saturation_stage_compares_both_losses_from_the_same_start(tiny_params, tiny_processed, tmp_path):
    summary = gan_saturation_stage(tiny_params, tiny_processed, tmp_path)
    rows = list(csv.DictReader((tmp_path / "plots" / "gan_saturation.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, tiny_params.saturation.steps + 1))
    assert set(rows[0]) == {"step", "non_saturating", "minimax"}
    # the same weights, batch and noise at step 1, where D(G(z)) is about 1/2: both losses give about the same
    # gradient there (d/dl of -log σ(l) and of log(1 - σ(l)) are -(1 - σ) and -σ); they part ways as D learns
    first = {k: float(v) for k, v in rows[0].items() if k != "step"}
    assert first["minimax"] == pytest.approx(first["non_saturating"], rel=0.2)
    # the summary's early norms are the means of the curves' first `early_window` steps
    written = json.loads((tmp_path / "gan_saturation.json").read_text())
    window = written["early_window"]
    assert window == min(50, tiny_params.saturation.steps) == summary["early_window"]
    for loss in ("non_saturating", "minimax"):
        mean = sum(float(r[loss]) for r in rows[:window]) / window
        assert written["early_grad_norm_g"][loss] == pytest.approx(mean, rel=1e-6) and mean > 0
    early = written["early_grad_norm_g"]
    assert written["ratio_non_saturating_to_minimax"] == pytest.approx(early["non_saturating"] / early["minimax"])
