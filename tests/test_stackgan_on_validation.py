"""pipeline/stackgan_on_validation.py: StackGAN's cpu recipe chosen on validation captions alone, by a rule over
seeds."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_evaluator, tiny_model, validation_only
from stackgan_on_validation import main, validation_scores  # pipeline/ is on sys.path (conftest)

from genzoo.models.registry import save_model


def _rows(folder, seed: int, scores: dict[str, tuple[float, float, float, float, float]]) -> None:
    """rows.json of one seed: recipe -> (stage II digit, colour, stroke, fd_stage2 - fd_stage1, train seconds)."""
    rows = {name: {"train_seconds": seconds,
                   "validation_scores": {"stage2_digit_accuracy": digit, "stage2_colour_accuracy": colour,
                                         "stage2_stroke_accuracy": stroke, "stage1_digit_accuracy": 0.5,
                                         "fd_stage1": 10.0, "fd_stage2": 10.0 + fd_gap}}
            for name, (digit, colour, stroke, fd_gap, seconds) in scores.items()}
    (folder / f"seed_{seed}").mkdir(parents=True)
    (folder / f"seed_{seed}" / "rows.json").write_text(json.dumps({"rows": rows}))


def _rank(folder) -> dict:
    assert main(["--data", "x", "--derived", "x", "--models", "x", "--out", str(folder), "--rank"]) == 0
    return json.loads((folder / "ranking.json").read_text())


def test_the_rule_takes_the_best_mean_worst_fidelity_within_the_time_budget(tmp_path, capsys):
    _rows(tmp_path, 0, {"cpu": (0.8, 0.95, 0.9, -5, 100.0), "digit": (0.9, 0.95, 0.85, -5, 110.0),
                        "stroke": (0.8, 0.99, 0.99, -5, 120.0), "slow": (0.95, 0.95, 0.95, -5, 150.0)})
    _rows(tmp_path, 1, {"cpu": (0.7, 0.95, 0.9, -5, 100.0), "digit": (0.9, 0.95, 0.87, -5, 110.0),
                        "stroke": (0.84, 0.99, 0.99, -5, 120.0), "slow": (0.95, 0.95, 0.95, -5, 140.0)})
    ranking = _rank(tmp_path)
    assert ranking["chosen"] == "digit"  # "slow" scores best but takes 1.45x the cpu recipe's time
    assert ranking["table"]["digit"]["worst_fidelity"] == pytest.approx(0.86)  # the stroke: 0.85, 0.87
    assert ranking["table"]["stroke"]["worst_fidelity"] == pytest.approx(0.82)  # the digit: 0.8, 0.84
    assert ranking["table"]["cpu"]["worst_fidelity"] == pytest.approx(0.75)
    assert "| digit | 86.0% | 90.0% | 95.0% | 86.0% | 50.0% | 10.0 | 5.0 | 110 |" in capsys.readouterr().out


def test_a_stage_two_farther_from_the_digits_than_stage_one_on_any_seed_is_not_chosen(tmp_path):
    _rows(tmp_path, 0, {"cpu": (0.8, 0.9, 0.9, -5, 100.0), "sharp": (0.95, 0.95, 0.95, -5, 100.0)})
    _rows(tmp_path, 1, {"cpu": (0.8, 0.9, 0.9, -5, 100.0), "sharp": (0.95, 0.95, 0.95, 1, 100.0)})
    ranking = _rank(tmp_path)
    assert ranking["chosen"] == "cpu" and not ranking["table"]["sharp"]["stage2_nearer_every_seed"]


def test_the_rule_needs_the_cpu_recipe_as_its_time_reference(tmp_path):
    _rows(tmp_path, 0, {"digit": (0.9, 0.95, 0.85, -5, 110.0)})
    with pytest.raises(SystemExit, match="cpu"):
        _rank(tmp_path)


def test_validation_scores_split_validation_in_two_and_never_read_test(tmp_path, tiny_params, monkeypatch):
    from genzoo.data.captions import build_captions

    def captions():
        gen = torch.Generator().manual_seed(0)
        digits = {"x": torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8),
                  "y": torch.arange(40) % 10}
        return build_captions(digits, gen)

    read, seen = validation_only(monkeypatch, captions)
    model = tiny_model("stackgan", tiny_params, score_rows=0)
    model_file = save_model(model, "stackgan", tmp_path / "stackgan.pt")
    evaluator = save_model(tiny_evaluator(), "evaluator", tmp_path / "evaluator.pt")
    scores = validation_scores(model_file, evaluator, tmp_path, seed=0)
    assert read == [("captions", "val")]
    assert seen["fitted_on"] == 20 and scores["scored_images"] == 20  # first half fitted, second half scored
    assert 0 <= scores["stage2_digit_accuracy"] <= 1 and scores["fd_stage2"] >= 0
