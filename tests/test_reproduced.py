"""pipeline/reproduced.py: a fresh run's metrics/ set beside the committed one, value by value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reproduced import compare, main  # pipeline/ is on sys.path (conftest)


def metrics_folder(root: Path) -> Path:
    (root / "plots").mkdir(parents=True)
    (root / "figures" / "vae").mkdir(parents=True)
    (root / "gpu").mkdir()
    (root / "probes" / "vae_side_run").mkdir(parents=True)
    (root / "vae.json").write_text(json.dumps({
        "test_nll": 99.58, "nll_kind": "iwae", "histogram": [0.1, 0.9], "loss": float("nan"),
        "train_seconds": 75.8, "final": {"train/steps_per_s": 84.7},
        "provenance": {"commit": "abc", "created": "2026-11-26T00:00:00Z"}}))
    (root / "plots" / "vae_train.csv").write_text("step,loss,steps_per_s\n1,0.5,120.0\n2,0.25,130.0\n")
    (root / "figures" / "vae" / "samples.png").write_bytes(b"\x89PNG one")
    (root / "gpu" / "vae.json").write_text(json.dumps({"test_nll": 86.0}))
    (root / "probes" / "vae_side_run" / "vae.json").write_text(json.dumps({"test_nll": 101.0}))
    return root


def test_a_copy_is_identical_apart_from_times_and_provenance(tmp_path):
    committed = metrics_folder(tmp_path / "committed")
    fresh = tmp_path / "fresh"
    shutil.copytree(committed, fresh)
    run = json.loads((fresh / "vae.json").read_text())
    run.update(train_seconds=80.1, final={"train/steps_per_s": 65.1},
               provenance={"commit": "def", "created": "2026-11-27T00:00:00Z"})
    (fresh / "vae.json").write_text(json.dumps(run))
    (fresh / "plots" / "vae_train.csv").write_text("step,loss,steps_per_s\n1,0.5,99.0\n2,0.25,98.0\n")
    (fresh / "gpu" / "vae.json").write_text(json.dumps({"test_nll": 90.0}))  # gpu snapshots are not a cpu run's
    (fresh / "probes" / "vae_side_run" / "vae.json").write_text(json.dumps({"test_nll": 102.0}))  # nor probes

    result = compare(fresh, committed)
    assert result["commits"] == {"fresh": ["def"], "committed": ["abc"]}
    s = result["summary"]
    assert s == {"files": 2, "files_identical": 2, "values": 5 + 4, "values_equal": 9,  # NaN = NaN: same result
                 "pictures": 1, "pictures_identical": 1}


def test_changed_values_pictures_and_missing_files_are_reported(tmp_path, capsys):
    committed = metrics_folder(tmp_path / "committed")
    fresh = tmp_path / "fresh"
    shutil.copytree(committed, fresh)
    (fresh / "vae.json").write_text((fresh / "vae.json").read_text().replace("99.58", "99.6"))
    (fresh / "plots" / "vae_train.csv").write_text("step,loss,steps_per_s\n1,0.5,120.0\n2,x,130.0\n")
    (fresh / "figures" / "vae" / "samples.png").write_bytes(b"\x89PNG two")
    (fresh / "aae.json").write_text("{}")
    (committed / "old.json").write_text("{}")

    result = compare(fresh, committed)
    vae = result["files"]["vae.json"]
    assert (vae["values"], vae["equal"]) == (5, 4)
    assert vae["largest"][0]["value"] == "test_nll"
    assert abs(vae["max_relative_difference"] - 0.02 / 99.6) < 1e-12
    assert result["files"]["plots/vae_train.csv"]["largest"][0] == {
        "value": "1:loss", "fresh": "x", "committed": 0.25, "relative": None}
    assert result["pictures_different"] == ["figures/vae/samples.png"]
    assert result["not_in_committed"] == ["aae.json"] and result["not_in_fresh"] == ["old.json"]

    assert main([str(fresh), str(committed), "--out", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    assert "vae.json: 1 of 5 values differ" in printed and "figures/vae/samples.png: picture differs" in printed
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["summary"]["values_equal"] == 4 + 3
    out = tmp_path / "out.json"
    assert written["provenance"]["command"] == f"python pipeline/reproduced.py {fresh} {committed} --out {out}"
    assert written["provenance"]["hardware"].endswith(" cores") and "dirty" in written["provenance"]


def test_values_on_one_side_only_keep_a_file_from_counting_as_identical(tmp_path, capsys):
    """A model added to evaluate.json, or a CSV row lost, is a difference even when every shared value agrees."""
    committed = metrics_folder(tmp_path / "committed")
    fresh = tmp_path / "fresh"
    shutil.copytree(committed, fresh)
    run = json.loads((fresh / "vae.json").read_text())
    (fresh / "vae.json").write_text(json.dumps({**run, "new_score": 1.0}))
    (fresh / "plots" / "vae_train.csv").write_text("step,loss,steps_per_s\n1,0.5,120.0\n")

    result = compare(fresh, committed)
    assert result["summary"]["values"] == result["summary"]["values_equal"] == 5 + 2
    assert result["summary"]["files_identical"] == 0
    assert result["files"]["vae.json"]["only_fresh"] == 1
    assert result["files"]["plots/vae_train.csv"]["only_committed"] == 2
    main([str(fresh), str(committed)])
    printed = capsys.readouterr().out
    assert "vae.json: 1 values only in the fresh run, 0 only in the committed" in printed
    assert "identical: 0 of 2 files" in printed
