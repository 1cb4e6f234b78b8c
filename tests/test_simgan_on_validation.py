"""pipeline/simgan_on_validation.py: SimGAN's cpu recipe chosen on validation digits alone, by a rule over seeds."""

from __future__ import annotations

import json

import pytest
import torch
from compose import parse_recipe  # pipeline/ is on sys.path (conftest)
from helpers import tiny_evaluator, tiny_model
from simgan_on_validation import main, validation_scores

from genzoo.models.registry import save_model


def _rows(folder, seed: int, scores: dict[str, tuple[float, float]]) -> None:
    """rows.json of one seed: recipe -> (evaluator accuracy on refined val digits, real-val error when refined)."""
    rows = {name: {"validation_scores": {"evaluator_accuracy_refined": acc, "real_test_error_refined": err,
                                         "real_test_error_raw": 0.4}} for name, (acc, err) in scores.items()}
    (folder / f"seed_{seed}").mkdir(parents=True)
    (folder / f"seed_{seed}" / "rows.json").write_text(json.dumps({"rows": rows}))


def test_the_rule_keeps_the_label_on_every_seed_then_takes_the_lowest_mean_error(tmp_path, capsys):
    _rows(tmp_path, 0, {"unstable": (0.97, 0.30), "kept": (0.96, 0.41), "kept_worse": (0.99, 0.45)})
    _rows(tmp_path, 1, {"unstable": (0.40, 0.70), "kept": (0.955, 0.42), "kept_worse": (0.98, 0.44)})
    assert main(["--data", "x", "--derived", "x", "--models", "x", "--out", str(tmp_path), "--rank"]) == 0
    ranking = json.loads((tmp_path / "ranking.json").read_text())
    assert ranking["chosen"] == "kept"  # "unstable" has the lowest error on seed 0 but lost the label on seed 1
    assert ranking["table"]["unstable"]["label_kept"] == pytest.approx(0.40)
    assert ranking["table"]["kept"]["error_refined"] == pytest.approx(0.415)
    assert "| kept | 95.5% | 41.5% | 40.0% |" in capsys.readouterr().out


def test_a_recipe_is_a_name_and_overrides_of_the_simgan_section():
    assert parse_recipe("simgan", "cpu:") == ("cpu", [])
    assert parse_recipe("simgan", "sgd:optimizer=sgd,lr=0.01") == ("sgd", ["simgan.optimizer=sgd", "simgan.lr=0.01"])


def test_validation_scores_read_the_validation_split_and_never_test(tmp_path, tiny_params, monkeypatch):
    from genzoo.data import derived

    read = []

    def load_set(root, name, split, device="cpu"):
        read.append(split)
        if split == "test":
            raise AssertionError("a recipe probe read the test split")
        gen = torch.Generator().manual_seed(len(read))
        return {"a": torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8),
                "y_a": torch.arange(40) % 10,
                "b": torch.randint(0, 256, (40, 1, 28, 28), generator=gen, dtype=torch.uint8),
                "y": torch.arange(40) % 10}

    monkeypatch.setattr(derived, "load_set", load_set)
    model = save_model(tiny_model("simgan", tiny_params), "simgan", tmp_path / "simgan.pt")
    evaluator = save_model(tiny_evaluator(), "evaluator", tmp_path / "evaluator.pt")
    scores = validation_scores(model, evaluator, tmp_path, seed=0)
    assert sorted(read) == ["train", "val"]
    assert 0 <= scores["evaluator_accuracy_refined"] <= 1 and 0 <= scores["real_test_error_refined"] <= 1
