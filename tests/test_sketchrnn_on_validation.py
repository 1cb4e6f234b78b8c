"""pipeline/sketchrnn_on_validation.py: Sketch-RNN's cpu recipe chosen on validation sketches alone, by a rule over
seeds with a time budget read against a drift-corrected reference (compose.time_ratios)."""

from __future__ import annotations

import json

import pytest
from compose import time_ratios  # pipeline/ is on sys.path (conftest)
from helpers import tiny_evaluator
from sketchrnn_on_validation import main, validation_scores
from test_sketchrnn import strokes_batch, tiny_sketchrnn

from genzoo.models.registry import save_model


def _rows(folder, seed: int, runs: dict[str, tuple[float, float, float]]) -> None:
    """rows.json of one seed: recipe -> (reconstruction accuracy, train seconds, start time)."""
    rows = {name: {"train_seconds": seconds, "started": started,
                   "validation_scores": {"reconstruction_accuracy": acc, "original_accuracy": 0.97,
                                         "test_l_r": 0.07, "test_l_kl": 0.26}}
            for name, (acc, seconds, started) in runs.items()}
    (folder / f"seed_{seed}").mkdir(parents=True)
    (folder / f"seed_{seed}" / "rows.json").write_text(json.dumps({"rows": rows}))


def _rank(folder) -> dict:
    assert main(["--data", "x", "--derived", "x", "--models", "x", "--out", str(folder), "--rank"]) == 0
    return json.loads((folder / "ranking.json").read_text())


def test_time_ratios_interpolate_the_reference_between_its_two_runs():
    rows = {"cpu": {"train_seconds": 100.0, "started": 0.0}, "late": {"train_seconds": 150.0, "started": 50.0},
            "cpu_again": {"train_seconds": 140.0, "started": 100.0}}
    ratios = time_ratios(rows)
    assert ratios["late"] == pytest.approx(150 / 120)  # halfway: the reference took 120 s by then
    assert ratios["cpu"] == pytest.approx(1.0) and ratios["cpu_again"] == pytest.approx(1.0)
    del rows["cpu_again"]
    assert time_ratios(rows)["late"] == pytest.approx(1.5)  # no second run: the first run's time
    rows["cpu_again"] = {"train_seconds": 140.0}  # rows without start times: the first run's time
    assert time_ratios(rows)["late"] == pytest.approx(1.5)


def test_the_rule_takes_the_best_mean_reconstructions_within_the_drift_corrected_budget(tmp_path, capsys):
    # seed 0's host slowed: its reference went 100 -> 160 s; "late" took 1.4x the first run, 1.08x the interpolated
    _rows(tmp_path, 0, {"cpu": (0.60, 100.0, 0.0), "late": (0.70, 140.0, 50.0), "slow": (0.80, 200.0, 80.0),
                        "cpu_again": (0.60, 160.0, 100.0)})
    _rows(tmp_path, 1, {"cpu": (0.64, 100.0, 0.0), "late": (0.66, 110.0, 50.0), "slow": (0.82, 190.0, 80.0),
                        "cpu_again": (0.64, 100.0, 100.0)})
    ranking = _rank(tmp_path)
    assert ranking["chosen"] == "late"  # "slow" reads best but takes ~1.6x its reference on both seeds
    assert ranking["table"]["late"]["reconstruction_accuracy"] == pytest.approx(0.68)
    assert ranking["table"]["late"]["time_ratio"] == pytest.approx((140 / 130 + 1.1) / 2)
    assert ranking["table"]["slow"]["time_ratio"] > 1.25
    assert "| late | 68.0% | 97.0% | 0.0700 | 0.260 | 125 | 1.09 |" in capsys.readouterr().out


def test_the_rule_needs_the_cpu_recipe_as_its_time_reference(tmp_path):
    _rows(tmp_path, 0, {"late": (0.7, 110.0, 0.0)})
    with pytest.raises(SystemExit, match="cpu"):
        _rank(tmp_path)


def test_validation_scores_read_every_validation_sketch_and_never_test(tmp_path, monkeypatch):
    from genzoo.data import derived

    read = []

    def load_set(root, name, split, device="cpu"):
        read.append((name, split))
        if split == "test":
            raise AssertionError("a recipe probe read the test split")
        return strokes_batch(7, seed=1)

    monkeypatch.setattr(derived, "load_set", load_set)
    model = tiny_sketchrnn(score_rows=3)  # the probe scores every row whatever the profile caps
    model_file = save_model(model, "sketchrnn", tmp_path / "sketchrnn.pt")
    evaluator = tiny_evaluator()
    read_by_evaluator = []
    predict = type(evaluator).predict
    monkeypatch.setattr(type(evaluator), "predict",
                        lambda self, x: read_by_evaluator.append(len(x)) or predict(self, x))
    scores = validation_scores(model_file, save_model(evaluator, "evaluator", tmp_path / "evaluator.pt"), tmp_path,
                               seed=0)
    assert read == [("strokes", "val")]
    assert read_by_evaluator == [7, 7]  # all 7 reconstructions and all 7 originals, not the profile's 3
    assert 0 <= scores["reconstruction_accuracy"] <= 1 and scores["test_l_r"] == scores["test_l_r"]


def test_probe_rows_record_when_each_recipe_started_and_drop_its_weights(tmp_path, monkeypatch):
    import compose

    trained = []

    def side_run(model, run, overrides, data, evaluator, derived=None, log=None):
        trained.append(overrides)
        (run / "models" / model).mkdir(parents=True)
        return {"train_seconds": 10.0 * len(trained), "final": {"val/l_r": 0.1, "train/loss": 0.2}}

    monkeypatch.setattr(compose, "side_run", side_run)
    score = lambda model, evaluator: {"reconstruction_accuracy": 0.5}  # noqa: E731
    compose.probe_recipes("sketchrnn", ["cpu:", "lr:lr=0.002"], 1, tmp_path, tmp_path, tmp_path, tmp_path, score)
    compose.probe_recipes("sketchrnn", ["cpu_again:"], 1, tmp_path, tmp_path, tmp_path, tmp_path, score)
    rows = json.loads((tmp_path / "seed_1" / "rows.json").read_text())["rows"]
    assert sorted(rows) == ["cpu", "cpu_again", "lr"]  # a later call adds to the seed's rows (json sorts them)
    assert rows["cpu"]["started"] <= rows["lr"]["started"] <= rows["cpu_again"]["started"]
    assert rows["lr"]["overrides"] == ["sketchrnn.lr=0.002"] and rows["lr"]["val"] == {"val/l_r": 0.1}
    assert trained[1] == ["sketchrnn.lr=0.002", "run.seed=1", "engine.threads=1"]
    assert not any((tmp_path / "seed_1" / name / "models").exists() for name in rows)
