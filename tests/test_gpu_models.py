"""pipeline/gpu_models.py plans each model's epochs from its measured speed, runs budgeted and checkpointed parts,
and is handed its params composed by pipeline/compose.py --out."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml
from gpu_models import SAFETY, apply_recipe, load_recipes, part_share, plan_epochs  # pipeline/ is on sys.path
from helpers import ROOT

from genzoo.models.registry import load_params


def test_plan_keeps_the_profile_epochs_when_they_fit():
    assert plan_epochs(60, steps_per_s=200.0, steps_per_epoch=859, seconds=1000.0) == 60


def test_plan_caps_the_epochs_to_the_share_of_the_budget():
    # 100 s at 1000 steps/s, 430 steps an epoch: 232 epochs of time, SAFETY of it planned
    assert plan_epochs(1000, 1000.0, 430, 100.0) == int(SAFETY * 100 * 1000 / 430)
    assert plan_epochs(1000, 1.0, 430, 10.0) == 1  # never zero epochs


def test_with_checkpoints_each_part_takes_what_is_left_in_turn_and_without_an_even_share():
    assert part_share(300.0, 2, checkpoints=True) == 300.0  # the first finishes if it fits; the next gets the rest
    assert part_share(300.0, 2, checkpoints=False) == 150.0 and part_share(-4.0, 1, checkpoints=True) == 0.0


def test_a_budgeted_run_trains_scores_and_snapshots_on_tiny_data(tmp_path, tiny_params_file):
    """The script end to end on the tiny profile and a tiny IDX mirror: what a lent GPU's minutes depend on."""
    from gpu_models import main

    params = tiny_params_file
    out = tmp_path / "snap"
    assert main(["cvae", "--params", str(params), "--budget", "0.01", "--out", str(out),
                 "--work", str(tmp_path / "work"), "--bench-steps", "2", "--bench-only", "vae"]) == 0
    assert not (Path("models") / ".checkpoints" / "cvae.pt").exists()  # the checkout's checkpoints are left alone

    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith(f"python pipeline/gpu_models.py --params {params.as_posix()} --budget 0.01 ")
    assert run["hardware"].endswith(" cores") and run["commit"] and "dirty" in run  # which machine, which code
    planned = run["models"]["cvae"]
    assert planned["epochs"] == 1 <= planned["profile_epochs"]  # 10 ms of budget: the cap, never zero epochs
    assert yaml.safe_load((out / "params.yaml").read_text())["cvae"]["epochs"] == 1  # what it trained with
    assert set(run["bench_only"]) == {"vae"} and run["bench_only"]["vae"]["steps_per_s"] > 0 and not run["failed"]
    evaluate = json.loads((out / "evaluate.json").read_text())
    assert set(evaluate["models"]) == {"cvae"} and "label_agreement" in evaluate["models"]["cvae"]
    assert list((out / "figures" / "cvae").glob("*.png")) and (out / "cvae.json").is_file()
    assert (out / "plots" / "cvae_train.csv").is_file() and (out / "evaluator.json").is_file()


def test_a_translation_part_gets_its_derived_set_and_enhancenet_its_own_perceptual_network(tmp_path,
                                                                                            tiny_params_file):
    """The derive stage's sets, made in the work folder (not read from the checkout's data/derived), and the frozen
    networks a part trains through, trained before it, for the parts and the bench-only timings alike."""
    from gpu_models import main

    out, work = tmp_path / "snap", tmp_path / "work"
    assert main(["enhancenet", "--params", str(tiny_params_file), "--budget", "0.01", "--out", str(out),
                 "--work", str(work), "--bench-steps", "2", "--bench-only", "pix2pix"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert not run["failed"] and run["models"]["enhancenet"]["epochs"] == 1 and run["bench_only"]["pix2pix"]
    assert (work / "derived" / "meta.json").is_file() and (work / "models" / "perceptual" / "model.pt").is_file()
    assert (out / "perceptual.json").is_file() and (out / "evaluator.json").is_file()
    scores = json.loads((out / "evaluate.json").read_text())["models"]["enhancenet"]
    assert {"fd", "psnr", "bicubic_psnr"} <= set(scores)


BLOCKER = """import sys
from importlib.abc import MetaPathFinder


class Block(MetaPathFinder):  # the lent GPU machine's image has none of these
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"dvc", "mlflow", "ruamel", "hydra", "omegaconf", "markdown_it"}:
            raise ImportError(f"No module named {name!r}")


sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_a_part_runs_where_dvc_and_mlflow_are_not_installed(tmp_path, tiny_params_file):
    """As on a lent GPU: given composed params it trains, scores and snapshots with MLflow off by default; without
    them it says in one line that composing needs dvc."""
    import os
    import subprocess

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env.pop("GENZOO_MLFLOW", None)
    script = [sys.executable, str(ROOT / "pipeline" / "gpu_models.py"), "cvae", "--budget", "0.01",
              "--work", str(tmp_path / "work")]
    done = subprocess.run([*script, "--params", str(tiny_params_file), "--out", str(tmp_path / "snap")], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "snap" / "run.json").read_text())["models"]["cvae"]["epochs"] == 1
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    refused = subprocess.run([*script, "--out", str(tmp_path / "other")], env=env, capture_output=True, text=True,
                             cwd=tmp_path)
    assert refused.returncode != 0 and "composing the gpu params needs dvc" in refused.stderr
    assert "pass --params" in refused.stderr.strip().splitlines()[-1]


def test_with_checkpoints_a_model_pauses_at_its_share_and_the_next_run_finishes_it(tmp_path, tiny_params_file):
    """--checkpoints: the profile's epochs over two runs (two leases), the second resuming the first's checkpoint."""
    from gpu_models import main

    params = tiny_params_file
    keep = tmp_path / "carried"
    common = ["cvae", "--params", str(params), "--work", str(tmp_path / "work"), "--checkpoints", str(keep)]

    keep.mkdir()
    (keep / "cvae.runs.json").write_text(json.dumps([{"from_step": 0, "to_step": 7}]))  # a ledger without checkpoint
    assert main([*common, "--budget", "0", "--out", str(tmp_path / "first")]) == 0  # no time: pause at once
    first = json.loads((tmp_path / "first" / "run.json").read_text())
    paused = first["models"]["cvae"]
    assert paused["paused_at"] == 1 < paused["total_steps"] and first["checkpoints"] and not first["failed"]
    assert (keep / "cvae.pt").is_file() and not (tmp_path / "first" / "cvae.json").exists()
    ledger = json.loads((keep / "cvae.runs.json").read_text())  # the stale one was dropped, this run kept
    assert [(r["from_step"], r["to_step"]) for r in ledger] == [(0, 1)]
    assert {k: ledger[0][k] for k in ("hardware", "commit", "dirty", "command")} == \
        {k: first[k] for k in ("hardware", "commit", "dirty", "command")}  # each ledger entry names its run
    assert "--checkpoints" in first["command"]

    (keep / "cvae.runs.json").unlink()  # a checkpoint from before the ledger: its run starts at its own step
    assert main([*common, "--budget", "0", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "run.json").read_text())["models"]["cvae"]["paused_at"]
    assert [(r["from_step"], r["to_step"]) for r in json.loads((keep / "cvae.runs.json").read_text())] == [(1, again)]

    assert main([*common, "--budget", "600", "--out", str(tmp_path / "second")]) == 0
    second = json.loads((tmp_path / "second" / "run.json").read_text())
    done = second["models"]["cvae"]
    epochs = load_params(params).model("cvae").epochs
    assert done["resumed_from"] == again > 1 and done["epochs"] == done["profile_epochs"] == epochs
    assert not (keep / "cvae.pt").exists()  # finished: the checkpoint has done its job
    assert [(r["from_step"], r["to_step"]) for r in done["runs"]] == [(1, again), (again, paused["total_steps"])]
    assert not (keep / "cvae.runs.json").exists()  # the ledger went into run.json
    summary = json.loads((tmp_path / "second" / "cvae.json").read_text())
    assert summary["resumed_from"] == again and summary["steps"] == paused["total_steps"]
    assert "cvae" in json.loads((tmp_path / "second" / "evaluate.json").read_text())["models"]


def test_compose_out_writes_the_gpu_params_elsewhere_and_leaves_params_yaml(tmp_path):
    """What a machine without dvc is handed (--params): the gpu composition, with the checkout's params.yaml kept."""
    import subprocess

    before = (ROOT / "params.yaml").read_text()
    out = tmp_path / "carry" / "gpu.yaml"
    done = subprocess.run([sys.executable, str(ROOT / "pipeline" / "compose.py"), "--out", str(out), "profile=gpu"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (ROOT / "params.yaml").read_text() == before
    assert yaml.safe_load(out.read_text())["run"]["profile"] == "gpu"


def test_a_part_paused_by_its_window_ends_with_the_weights_of_one_uninterrupted_run(tmp_path, tiny_params_file):
    """Paused at once (no budget), then resumed to the end in a second window: bit-identical to one window that
    trains it through (the engine's checkpoint keeps the model, optimizers, schedules, sums and RNG)."""
    import torch
    from gpu_models import main

    def window(name: str, budget: str) -> None:
        assert main(["cvae", "--params", str(tiny_params_file), "--work", str(tmp_path / name), "--budget", budget,
                     "--checkpoints", str(tmp_path / f"{name}-checkpoints"),
                     "--out", str(tmp_path / name / "out")]) == 0

    window("paused", "0")
    assert (tmp_path / "paused-checkpoints" / "cvae.pt").is_file()
    window("paused", "600")
    window("through", "600")
    paused, through = (torch.load(tmp_path / name / "models" / "cvae" / "model.pt", weights_only=True)
                       for name in ("paused", "through"))
    weights, reference = paused["state"], through["state"]  # registry.save_model's file
    assert weights.keys() == reference.keys() and paused["config"] == through["config"]
    assert all(torch.equal(weights[k], reference[k]) for k in weights), "the resumed part trained differently"


def test_a_recipe_overlays_the_named_sections_of_a_copy_and_refuses_what_it_cannot_apply():
    raw = {"vae": {"epochs": 10, "hidden": [400]}, "gan": {"epochs": 5}}
    recipes = {"paper": {"vae": {"epochs": 3280, "hidden": [200, 200]}}}
    out = apply_recipe(raw, "paper", ["vae"], recipes)
    assert out["vae"] == {"epochs": 3280, "hidden": [200, 200]} and out["gan"] == raw["gan"]
    assert raw["vae"] == {"epochs": 10, "hidden": [400]}  # the caller's params are left as they were
    with pytest.raises(SystemExit, match="unknown recipe 'best'"):
        apply_recipe(raw, "best", ["vae"], recipes)
    with pytest.raises(SystemExit, match="no paper recipe for gan; recipes.yaml has paper recipes for: vae"):
        apply_recipe(raw, "paper", ["vae", "gan"], recipes)
    with pytest.raises(SystemExit, match=r"paper.vae: width not in the vae section's params"):
        apply_recipe(raw, "paper", ["vae"], {"paper": {"vae": {"width": 3}}})


def test_the_committed_paper_recipes_are_valid_params_of_the_gpu_profile(tmp_path):
    """Every overlay of recipes.yaml on the gpu composition parses (types, ranges, choices) as a model section."""
    from compose import compose

    from genzoo.models.registry import parse_params

    composed = tmp_path / "gpu.yaml"
    compose(composed, ["profile=gpu"])
    raw = yaml.safe_load(composed.read_text())
    for recipe, overlays in load_recipes().items():
        params = parse_params(apply_recipe(raw, recipe, list(overlays), load_recipes()), source=recipe)
        for name, overlay in overlays.items():
            assert {k: getattr(params.model(name), k) for k in overlay} == overlay
    vae = parse_params(apply_recipe(raw, "paper", ["vae"], load_recipes())).model("vae")
    assert (vae.hidden, vae.latent_dim, vae.activation, vae.batch_size, vae.adam_eps, vae.lr_schedule) == \
        ([200, 200], 50, "tanh", 20, 1e-4, "burda")  # Burda et al. 2016, Table 1's VAE
    paper = parse_params(apply_recipe(raw, "paper", ["pixelcnn", "flow_vae", "flow_vae_deep"], load_recipes()))
    assert (paper.model("pixelcnn").binarization, paper.model("pixelcnn").optimizer) == ("static", "rmsprop")
    flows = paper.model("flow_vae_deep")
    assert (flows.latent_dim, flows.activation, flows.optimizer, flows.lr, flows.momentum, flows.anneal,
            flows.flows) == (40, "maxout", "rmsprop", 1e-5, 0.9, "joint", 80)  # Rezende & Mohamed 2015
    twin = parse_params(apply_recipe(raw, "paper_flowless", ["flow_vae_deep"], load_recipes())).model("flow_vae_deep")
    assert twin == dataclasses.replace(flows, flows=0)  # the paper's control differs in K alone
    gan = parse_params(apply_recipe(raw, "paper", ["gan"], load_recipes())).model("gan")
    assert (gan.optimizer, gan.lr, gan.lr_schedule, gan.momentum, gan.momentum_final, gan.momentum_saturate_epoch,
            gan.update, gan.d_steps, gan.noise, gan.batch_size, gan.gen_hidden, gan.disc_units, gan.pieces) == \
        ("sgd", 0.1, "goodfellow", 0.5, 0.7, 250, "simultaneous", 1, "uniform_sqrt3", 100, [1200, 1200], [240, 240],
         5)  # Goodfellow et al. 2014, the authors' mnist.yaml


def test_a_paper_recipe_run_records_its_recipe_beside_every_number(tmp_path, tiny_params_file):
    """--recipe paper: trained at the overlay, and run.json and the snapshot's evaluate.json say which recipe and
    which training binarization made each number (what the report judges a paper's number on)."""
    from gpu_models import main

    out = tmp_path / "snap"
    assert main(["vae", "--recipe", "paper", "--params", str(tiny_params_file), "--budget", "0.01", "--out", str(out),
                 "--work", str(tmp_path / "work"), "--bench-steps", "2"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"] == "paper" and run["models"]["vae"]["recipe"] == "paper" and not run["failed"]
    assert "--recipe paper vae" in run["command"]
    used = yaml.safe_load((out / "params.yaml").read_text())["vae"]
    assert (used["activation"], used["hidden"], used["batch_size"]) == ("tanh", [200, 200], 20)
    scores = json.loads((out / "evaluate.json").read_text())["models"]["vae"]
    assert scores["recipe"] == "paper" and scores["train_binarization"] == "dynamic" and "test_nll" in scores
