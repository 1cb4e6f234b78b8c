"""The compare stage: nearest-neighbour distances against brute force, memorization on copies and on noise,
the aggregates over seeds, the stale-model refusal, seed reuse, and the whole stage on the tiny data set."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math

import pytest
import torch
from tiny_data import tiny_images

from genzoo.engine.errors import GenzooError
from genzoo.models.registry import build_model, save_model
from genzoo.params import CompareParams
from genzoo.stages import compare as compare_module
from genzoo.stages.compare import aggregate, compare_stage, grey_share, memorization, nearest_distances

SHAPE, CLASSES = (1, 28, 28), 10


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_nearest_distances_equal_brute_force(chunk):
    gen = torch.Generator().manual_seed(0)
    queries, reference = torch.rand(23, 3, 5, generator=gen), torch.rand(40, 15, generator=gen)
    distances, indices = nearest_distances(queries, reference, chunk=chunk)
    brute = torch.cdist(queries.flatten(1).double(), reference.double())  # (23, 40)
    expected, expected_index = brute.min(1)
    assert torch.equal(indices, expected_index)
    torch.testing.assert_close(distances.double(), expected, atol=1e-5, rtol=1e-5)
    reference[5] = queries[3].flatten()  # an exact copy: exactly 0, not the expansion's rounding
    distances, indices = nearest_distances(queries, reference, chunk=chunk)
    assert indices[3] == 5 and distances[3] == 0
    reference[30] = reference[5]  # a tie across blocks goes to the lowest index, whatever the chunk
    assert nearest_distances(queries, reference, chunk=chunk)[1][3] == 5


def digits(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return tiny_images(torch.arange(n) % CLASSES, 28, gen).float().div(255).unsqueeze(1)  # (n, 1, 28, 28)


def test_memorization_flags_copies_of_training_digits_and_not_noise():
    train, test = digits(200, 1), digits(60, 2)
    copies = memorization(train[torch.randperm(200, generator=torch.Generator().manual_seed(3))[:60]], train, test,
                          chunk=50)
    assert copies["ratio"] == 0 and copies["near_copies"] == 1 and copies["median_test"] > 0
    noise = memorization(torch.rand(60, *SHAPE, generator=torch.Generator().manual_seed(4)), train, test, chunk=50)
    assert noise["ratio"] > 2 and noise["near_copies"] == 0
    fresh = memorization(digits(60, 5), train, test, chunk=50)  # new digits of the same kind: like the test set
    assert 0.6 < fresh["ratio"] < 1.5 and fresh["near_copies"] < 0.1


def test_grey_share_counts_only_mid_grey_pixels():
    assert grey_share(torch.tensor([0.0, 0.05, 0.1, 0.5, 0.9, 0.95, 1.0, 0.3])) == pytest.approx(2 / 8)


def test_aggregates_on_hand_made_rows():
    rows = [{"seed": 0, "fd": 1.0, "classes_hit": 10, "test_nll": None, "source": "train@vae"},
            {"seed": 1, "fd": 3.0, "classes_hit": 9, "test_nll": 90.0},
            {"seed": 2, "fd": 5.0, "classes_hit": 10, "test_nll": 92.0}]
    agg = aggregate(rows, num_classes=10)
    assert agg["fd"] == {"mean": 3.0, "std": pytest.approx(2.0), "min": 1.0, "max": 5.0, "n": 3}
    assert agg["test_nll"]["n"] == 2 and agg["test_nll"]["mean"] == 91.0  # the missing value is not a zero
    assert agg["classes_hit"]["min"] == 9 and agg["seeds_missing_a_class"] == 1 and agg["seeds"] == [0, 1, 2]
    assert "seed" not in agg and "source" not in agg
    assert aggregate(rows[:1], 10)["fd"]["std"] == 0.0


# ---------------------------------------------------------------- the stage on tiny data

def stage_params(tiny_params, models, seeds):
    params = copy.deepcopy(tiny_params)
    params.compare = CompareParams(models=models, seeds=seeds, n_samples=120, memorization_samples=40, figure_pairs=3)
    params.raw["compare"] = dataclasses.asdict(params.compare)
    params.evaluate.parzen_samples = 120
    params.engine.monitor_samples = 0
    return params


def save_models(params, folder, names, seed=0):
    for name in ["evaluator", *names]:  # untrained weights will do: the plumbing is what is tested
        model = build_model(name, params.model(name), SHAPE, CLASSES, seed)
        save_model(model, name, folder / name / "model.pt")


def test_stage_refuses_a_stale_model(tiny_processed, tiny_params, tmp_path):
    params = stage_params(tiny_params, ["vae"], [0, 1])
    stale = dataclasses.replace(params.model("vae"), latent_dim=3)
    save_models(params, tmp_path / "models", [])
    save_model(build_model("vae", stale, SHAPE, CLASSES), "vae", tmp_path / "models" / "vae" / "model.pt")
    with pytest.raises(GenzooError, match="stale.*latent_dim"):
        compare_stage(params, tiny_processed, tmp_path / "models", tmp_path / "metrics", tmp_path / "ckpt")
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "models" / "compare").exists()


def test_extra_seeds_train_at_the_cpu_precision_the_run_seed_model_was_trained_at(tiny_processed, tiny_params,
                                                                                  tmp_path, monkeypatch):
    """A section's own `cpu_precision` reaches the extra seeds' fit (it resolves it from the section, as train@
    does), and a run-seed model trained under another setting is refused as stale."""
    params = stage_params(tiny_params, ["vae"], [0, 1])
    params.models["vae"] = dataclasses.replace(params.model("vae"), cpu_precision="bf16")
    models = tmp_path / "models"
    save_models(tiny_params, models, ["vae"])  # trained at the section's old setting (engine: fp32)
    with pytest.raises(GenzooError, match="stale.*cpu_precision"):
        compare_stage(params, tiny_processed, models, tmp_path / "metrics", tmp_path / "ckpt")

    class Trained(Exception):
        pass

    def fit(*args, config, engine, **kwargs):
        raise Trained(engine.precision_on("cpu", config), engine.cpu_precision)

    save_models(params, models, ["vae"])
    monkeypatch.setattr(compare_module, "fit", fit)
    with pytest.raises(Trained) as trained:
        compare_stage(params, tiny_processed, models, tmp_path / "metrics", tmp_path / "ckpt")
    assert trained.value.args == ("bf16", "fp32")


def test_stage_on_tiny_data_writes_json_csv_figures_and_reuses_the_run_seed_model(tiny_processed, tiny_params,
                                                                                  tmp_path, monkeypatch):
    params = stage_params(tiny_params, ["vae", "gan"], [0, 1])
    models, metrics = tmp_path / "models", tmp_path / "metrics"
    save_models(params, models, ["vae", "gan"], seed=7)
    fitted = []
    real_fit = compare_module.fit
    monkeypatch.setattr(compare_module, "fit", lambda *a, **k: fitted.append(k["seed"]) or real_fit(*a, **k))
    summary = compare_stage(params, tiny_processed, models, metrics, tmp_path / "ckpt")
    assert fitted == [1, 1], "seed 0 = run.seed is loaded from the train@ stage, never trained"
    written = json.loads((metrics / "compare.json").read_text())
    assert written["runs"] == json.loads(json.dumps(summary["runs"]))
    for name in ("vae", "gan"):
        s0, s1 = written["runs"][name]["s0"], written["runs"][name]["s1"]
        assert s0["source"] == f"train@{name}" and s0["train_seconds"] is None
        assert s1["source"] == "trained here" and s1["train_seconds"] > 0 and s1["steps"] > 0
        assert s1["trained_together"] == 1  # the seeds other than run.seed, as copies in one fit
        for row in (s0, s1):
            for key in ("fd", "kid", "precision", "recall", "classes_hit", "kl_to_uniform", "parzen_ll", "grey_share",
                        "mem_pixel_ratio", "mem_pixel_near_copies", "mem_feature_ratio", "mem_feature_near_copies"):
                assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (name, key)
        agg = written["aggregates"][name]
        assert agg["fd"]["n"] == 2 and (agg["fd"]["min"], agg["fd"]["max"]) == tuple(sorted((s0["fd"], s1["fd"])))
        assert agg["fd"]["mean"] == pytest.approx((s0["fd"] + s1["fd"]) / 2)
        assert agg["fd"]["std"] == pytest.approx(abs(s0["fd"] - s1["fd"]) / 2 ** 0.5)
        assert agg["seeds_missing_a_class"] == sum(row["classes_hit"] < CLASSES for row in (s0, s1))
    assert "test_nll" in written["runs"]["vae"]["s1"] and "test_nll" not in written["runs"]["gan"]["s1"]
    assert set(written["protocol"]) >= {"sharpness", "blur", "likelihood", "modes", "stability", "memorization"}
    assert written["provenance"]["stage"] == "compare" and 0 < written["real_test"]["grey_share"] < 1
    # the reused model is the saved one: its samples score as the saved file's do
    assert all((models / "compare" / f"{name}_s1" / "model.pt").exists() for name in ("vae", "gan"))
    assert not (models / "compare" / "vae_s0").exists() and not list((tmp_path / "ckpt").glob("*.pt"))
    rows = list(csv.DictReader((metrics / "plots" / "compare.csv").open()))
    assert [(r["model"], r["seed"]) for r in rows] == [("vae", "0"), ("vae", "1"), ("gan", "0"), ("gan", "1")]
    assert {"fd", "grey_share", "mem_pixel_ratio", "parzen_ll"} <= set(rows[0])
    assert {p.name for p in (metrics / "figures" / "compare").iterdir()} == {
        f"{m}_{k}.png" for m in ("vae", "gan") for k in ("samples", "memorization")}
    # the same run again gives the same numbers (sampling and distances are seeded and deterministic)
    again = compare_stage(params, tiny_processed, models, tmp_path / "metrics2", tmp_path / "ckpt")
    assert again["runs"]["vae"]["s0"]["fd"] == summary["runs"]["vae"]["s0"]["fd"]
    assert again["runs"]["gan"]["s1"]["mem_pixel_ratio"] == summary["runs"]["gan"]["s1"]["mem_pixel_ratio"]



def test_evaluate_takes_the_run_seed_scores_compare_measured_from_the_same_files_and_measures_them_otherwise(
        tiny_processed, tiny_params, tmp_path, monkeypatch):
    """Item 3 of issue 30: the run.seed models are scored once, by compare (which runs first). evaluate takes
    compare.json's shared scores when the scoring key matches (same weights, evaluator, evaluate section, seed,
    data, device kind) and measures them itself otherwise; both ways give the same numbers."""
    from genzoo.stages import evaluate as evaluate_module

    params = stage_params(tiny_params, ["vae", "gan"], [0, 1])
    params.evaluate.n_samples = params.compare.n_samples  # as both profiles have it: the same samples
    models, metrics = tmp_path / "models", tmp_path / "metrics"
    save_models(params, models, ["vae", "gan"], seed=7)
    compared = compare_stage(params, tiny_processed, models, metrics, tmp_path / "ckpt")["runs"]
    assert "scoring_key" in compared["vae"]["s0"] and "scoring_key" not in compared["vae"]["s1"]
    assert "test_nll" in compared["vae"]["s0"]["shared_scores"]

    scored = []
    real = evaluate_module.sample_scores
    monkeypatch.setattr(evaluate_module, "sample_scores", lambda model, *a: scored.append(model) or real(model, *a))
    reused = evaluate_module.evaluate_stage(params, tiny_processed, models, metrics, only=["vae", "gan"])["models"]
    assert scored == [], "both run.seed models' scores come from compare.json"
    for name in ("vae", "gan"):
        assert reused[name]["scores_from"] == "compare.json"
        for key in compared[name]["s0"]["shared_scores"]:
            assert reused[name][key] == compared[name]["s0"][key], (name, key)
    assert "recon_bce" not in reused["gan"] and math.isfinite(reused["vae"]["test_elbo"])  # its own scores still run

    # a key that does not match (here: as if another evaluator had scored it) is not trusted: measured again, the same
    written = json.loads((metrics / "compare.json").read_text())
    written["runs"]["vae"]["s0"]["scoring_key"] = "0" * 16
    (metrics / "compare.json").write_text(json.dumps(written))
    again = evaluate_module.evaluate_stage(params, tiny_processed, models, metrics, only=["vae", "gan"])["models"]
    assert len(scored) == 1 and again["vae"]["scores_from"] == "measured here"
    assert again["gan"]["scores_from"] == "compare.json"
    shared = compared["vae"]["s0"]["shared_scores"]
    assert {k: again["vae"][k] for k in shared} == {k: reused["vae"][k] for k in shared}

    # compare drawing another number of samples than evaluate shares nothing
    params.compare = dataclasses.replace(params.compare, n_samples=params.compare.n_samples - 20)
    fewer = compare_stage(params, tiny_processed, models, tmp_path / "metrics3", tmp_path / "ckpt")["runs"]
    assert "scoring_key" not in fewer["gan"]["s0"]
