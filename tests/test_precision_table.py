"""pipeline/precision_table.py: a bf16 run's headline numbers and stage times beside the fp32 run's."""

from __future__ import annotations

import json

import pytest
from precision_table import main, table  # pipeline/ is on sys.path (helpers)


def _run(folder, fd, nll, accuracy, seconds):
    folder.mkdir(parents=True)
    (folder / "evaluate.json").write_text(json.dumps({"models": {
        "gan": {"classes_hit": 10, "fd": fd}, "vae": {"classes_hit": 10, "fd": fd, "test_nll": nll},
        "pix2pix": {"accuracy": accuracy}}}))
    (folder / "evaluator.json").write_text(json.dumps({"test": {"accuracy": accuracy}}))
    timing = folder / "timing.json"
    timing.write_text(json.dumps({"total_seconds": sum(seconds.values()), "stages": seconds}))
    return timing


def test_each_models_numbers_and_its_stage_time_stand_side_by_side(tmp_path):
    fp32_timing = _run(tmp_path / "fp32", 10.0, 100.0, 0.99, {"train@gan": 60.0, "train_evaluator": 140.0,
                                                              "train_translation@pix2pix": 30.0})
    bf16_timing = _run(tmp_path / "bf16", 12.5, 100.5, 0.991, {"train@gan": 30.0, "train_evaluator": 70.0,
                                                               "train_translation@pix2pix": 40.0})
    lines = table(tmp_path / "bf16", tmp_path / "fp32", bf16_timing, fp32_timing)
    assert "| evaluator | accuracy (higher is better) | 0.99 | 0.991 | 140 | 70 | 2.00× |" in lines
    assert "| gan | classes_hit (higher is better) | 10 | 10 | 60 | 30 | 2.00× |" in lines
    assert "| gan | fd (lower is better) | 10 | 12.5 |  |  |  |" in lines  # the time once per model
    assert "| vae | test_nll (lower is better) | 100 | 100.5 |  |  |  |" in lines
    assert "| pix2pix | accuracy (higher is better) | 0.99 | 0.991 | 30 | 40 | 0.75× |" in lines  # its own stage
    assert lines[-1] == "Whole DAG: fp32 230 s, bf16 140 s (1.64×)."


def test_a_folder_without_a_whole_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no evaluate.json"):
        main([str(tmp_path / "empty"), str(tmp_path / "empty")])
