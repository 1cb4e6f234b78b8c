"""pipeline/stargan_on_validation.py: StarGAN's cpu recipe chosen on validation digits alone, by a rule over seeds."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_evaluator, tiny_model, validation_only
from stargan_on_validation import main, validation_scores  # pipeline/ is on sys.path (conftest)

from genzoo.models.registry import save_model


def _rows(folder, seed: int, scores: dict[str, tuple[float, float, float]]) -> None:
    """rows.json of one seed: recipe -> (worst single target reached, worst single digit kept, train seconds)."""
    rows = {name: {"train_seconds": seconds,
                   "validation_scores": {"single_reached_min": reached, "single_digit_min": digit,
                                         "combo_reached_min": 0.1}}
            for name, (reached, digit, seconds) in scores.items()}
    (folder / f"seed_{seed}").mkdir(parents=True)
    (folder / f"seed_{seed}" / "rows.json").write_text(json.dumps({"rows": rows}))


def test_the_rule_takes_the_best_mean_worst_single_target_within_the_time_budget(tmp_path, capsys):
    _rows(tmp_path, 0, {"cpu": (0.6, 0.4, 100.0), "reaches": (0.99, 0.5, 110.0), "keeps": (0.7, 0.9, 120.0),
                        "slow": (0.95, 0.95, 150.0)})
    _rows(tmp_path, 1, {"cpu": (0.5, 0.3, 100.0), "reaches": (0.98, 0.6, 110.0), "keeps": (0.6, 0.8, 120.0),
                        "slow": (0.95, 0.95, 140.0)})
    assert main(["--data", "x", "--derived", "x", "--models", "x", "--out", str(tmp_path), "--rank"]) == 0
    ranking = json.loads((tmp_path / "ranking.json").read_text())
    assert ranking["chosen"] == "keeps"  # "slow" scores best but takes 1.45x the cpu recipe's time
    assert ranking["table"]["keeps"]["worst_single"] == pytest.approx(0.65)  # min(0.7, 0.9), min(0.6, 0.8)
    assert ranking["table"]["reaches"]["worst_single"] == pytest.approx(0.55)
    assert ranking["table"]["cpu"]["worst_single"] == pytest.approx(0.35)
    assert "| keeps | 65.0% | 65.0% | 85.0% | 10.0% | 120 |" in capsys.readouterr().out


def test_the_rule_needs_the_cpu_recipe_as_its_time_reference(tmp_path):
    _rows(tmp_path, 0, {"reaches": (0.99, 0.5, 110.0)})
    with pytest.raises(SystemExit, match="cpu"):
        main(["--data", "x", "--derived", "x", "--models", "x", "--out", str(tmp_path), "--rank"])


def test_validation_scores_split_validation_in_two_and_never_read_test(tmp_path, tiny_params, monkeypatch):
    def multidomain():
        gen = torch.Generator().manual_seed(0)
        return {"x": torch.randint(0, 256, (40, 3, 28, 28), generator=gen, dtype=torch.uint8),
                "y": torch.arange(40) % 10, "colour": torch.arange(40) % 3, "stroke": torch.arange(40) // 3 % 3,
                "row": torch.arange(40)}

    read, seen = validation_only(monkeypatch, multidomain)
    model = save_model(tiny_model("stargan", tiny_params), "stargan", tmp_path / "stargan.pt")
    evaluator = save_model(tiny_evaluator(), "evaluator", tmp_path / "evaluator.pt")
    scores = validation_scores(model, evaluator, tmp_path, images=12, seed=0)
    assert read == [("multidomain", "val")]
    assert seen["fitted_on"] == 20 and scores["scored_images"] == 12  # first half fitted, second half scored
    assert 0 <= scores["single_reached_min"] <= 1 and 0 <= scores["single_digit_min"] <= 1
