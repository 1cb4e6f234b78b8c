"""pipeline/gpu_plan.py: the gpu profile as parts, priced from committed measurements and placed from committed
snapshots; the next window's parts; the README's generated section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from gpu_plan import (  # pipeline/ is on sys.path (conftest)
    CARRY_MB,
    END,
    START,
    main,
    next_parts,
    plan,
    table,
    write_readme,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"run": {"profile": "gpu"},
          "vae": {"epochs": 100, "batch_size": 100},
          "gan": {"epochs": 10, "batch_size": 100, "d_steps": 1, "gen_hidden": [600, 600]},  # a 13 MB checkpoint
          "cvae": {"epochs": 50, "batch_size": 550}, "pixelcnn": {"epochs": 4, "batch_size": 55},
          "stargan": {"epochs": 3, "batch_size": 16}}
MODELS = list(PARAMS)[1:]


def _targets(tmp_path: Path) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": [
        {"model": "vae", "profiles": ["gpu"]}, {"model": "gan", "profiles": ["gpu"]},
        {"model": "gan", "profiles": ["gpu"]}, {"model": "gan", "profiles": ["cpu"]},
        {"model": "pixelcnn", "profiles": ["gpu"]}, {"model": "stargan", "profiles": ["gpu"]}]}))
    return path


def _snapshot(metrics: Path, name: str, run: dict) -> None:
    folder = metrics / "gpu" / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"hardware": "NVIDIA H100 80GB HBM3", **run}))


@pytest.fixture
def committed(tmp_path):
    metrics = tmp_path / "metrics"
    (metrics / "gpu").mkdir(parents=True)
    (metrics / "gpu" / "bench.json").write_text(json.dumps({"results": [
        {"model": "vae", "device": "NVIDIA H100 80GB HBM3", "batch_size": 100, "steps_per_s": 1000.0,
         "steps_per_epoch": 550},
        {"model": "gan", "device": "cpu (2 cores)", "batch_size": 100, "steps_per_s": 50.0}]}))  # not a GPU's
    _snapshot(metrics, "done", {"models": {"cvae": {"profile_epochs": 50, "epochs": 50, "steps_per_s": 500.0}}})
    _snapshot(metrics, "paused", {"models": {"pixelcnn": {"profile_epochs": 4, "paused_at": 1000,
                                                          "total_steps": 4000}},
                                  "bench_only": {"gan": {"steps_per_s": 200.0}}})
    _snapshot(metrics, "short", {"models": {"vae": {"profile_epochs": 100, "epochs": 30, "steps_per_s": 900.0},
                                            "gan": {"profile_epochs": 999, "epochs": 999, "steps_per_s": 300.0}}})
    return metrics


def test_each_part_is_priced_from_measurements_and_placed_from_snapshots(tmp_path, committed):
    parts = {p.name: p for p in plan(PARAMS, committed, _targets(tmp_path), MODELS)}
    vae = parts["vae"]  # the fastest GPU measurement: the bench's 1000 steps/s, 550 steps an epoch
    assert (vae.steps_per_s, vae.steps_per_epoch, vae.measured_on) == (1000.0, 550, "metrics/gpu/bench.json")
    assert vae.state == "partial" and vae.epochs_capped == 30 and vae.minutes == pytest.approx(100 * 550 / 1000 / 60)
    gan = parts["gan"]  # the CPU bench row does not count; the 999-epoch run is another recipe's: not its state
    assert gan.state == "pending" and gan.targets == 2
    assert (gan.steps_per_s, gan.steps_per_epoch) == (300.0, 550)  # 55,000 images / 100, one batch a step
    assert parts["cvae"].state == "done"
    pixelcnn = parts["pixelcnn"]  # paused at a quarter of its steps: three quarters left, but no speed measured
    assert pixelcnn.state == "partial" and pixelcnn.fraction_done == 0.25 and pixelcnn.minutes is None
    assert parts["stargan"].minutes is None and parts["stargan"].steps_per_epoch is None  # a derived set: unknown
    order = [p.name for p in plan(PARAMS, committed, _targets(tmp_path), MODELS)]
    assert order[-1] == "cvae" and order.index("gan") < order.index("pixelcnn")  # done last; unmeasured late


def test_a_window_takes_the_parts_that_fit_and_one_that_pauses(tmp_path, committed):
    parts = plan(PARAMS, committed, _targets(tmp_path), MODELS)
    gan_minutes = next(p for p in parts if p.name == "gan").minutes  # 10 epochs of 550 steps at 300/s: 0.31 min
    assert next_parts(parts, budget_s=1) == ["gan"]  # too short for it: it starts and pauses at a checkpoint
    fits = next_parts(parts, budget_s=gan_minutes * 60 + 30)
    assert fits == ["gan", "vae"]  # then vae, which pauses within what is left
    assert next_parts(parts, budget_s=10**6) == ["gan", "vae"]  # an unmeasured part waits for a window of its own
    assert next_parts([p for p in parts if p.name not in ("gan", "vae")], budget_s=600) == ["pixelcnn"]
    assert next_parts([p for p in parts if p.name == "cvae"], budget_s=600) == []  # done
    gan = next(p for p in parts if p.name == "gan")
    assert gan.checkpoint_mb and gan.checkpoint_mb < CARRY_MB  # the MLP GAN's weights and Adam's moments
    gan.checkpoint_mb = CARRY_MB + 1  # a checkpoint the next window could not be handed: never paused at
    assert next_parts(parts, budget_s=1) == ["vae"] and next_parts(parts, budget_s=gan_minutes * 60 + 30)[0] == "gan"


def test_the_readme_section_is_the_table_and_the_table_lists_the_stage_parts(tmp_path, committed):
    lines = table(plan(PARAMS, committed, _targets(tmp_path), MODELS))
    assert lines[0].startswith("| part | gpu epochs | device minutes (left) |")
    assert any(line.startswith("| cvae | 50 | — | metrics/gpu/done | done (metrics/gpu/done) |") for line in lines)
    assert any("anogan (stage)" in line and "`dvc exp run -S profile=gpu anogan`" in line for line in lines)
    untargeted = [line.split(" | ")[0][2:] for line in lines[2:] if line.endswith("| pending | 0 |")]
    compact = table(plan(PARAMS, committed, _targets(tmp_path), MODELS), compact=True)
    assert len(untargeted) > 1 and f"| {', '.join(untargeted)} | — | — | — | pending | 0 |" in compact
    assert len(compact) == len(lines) - len(untargeted) + 1  # the README's: pending untargeted parts in one row
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## GPU profile\n{START}\nold\n{END}\nafter\n")
    assert write_readme(readme, lines) and not write_readme(readme, lines)  # the second time: nothing to change
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{END}\nafter\n") and "\n".join(lines) in text


def test_the_committed_readme_holds_the_plan_of_the_committed_metrics(tmp_path):
    """Like the results section: README's gpu-plan section is what `gpu_plan.py show --readme` writes now."""
    params = tmp_path / "gpu.yaml"
    from compose import compose

    compose(params, ["profile=gpu"])
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    assert main(["show", "--params", str(params), "--readme", str(readme)]) == 0
    assert readme.read_text() == (ROOT / "README.md").read_text(), "run python pipeline/gpu_plan.py show --readme"


def test_run_asks_the_part_runner_for_the_next_parts_with_carried_checkpoints(tmp_path, committed, monkeypatch):
    import gpu_models

    called = []
    monkeypatch.setattr(gpu_models, "main", lambda argv: called.append(argv) or 0)
    monkeypatch.setattr("gpu_plan.plan", lambda *args: plan(PARAMS, committed, _targets(tmp_path), MODELS))
    params = tmp_path / "gpu.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    assert main(["run", "--budget", "1", "--params", str(params), "--metrics", str(committed)]) == 0
    (argv,) = called
    assert argv == ["gan", "--budget", "1", "--out", str(committed / "gpu" / "gan"), "--checkpoints",
                    ".gpu/checkpoints", "--params", str(params)]
    with pytest.raises(SystemExit, match="--budget"):
        main(["run", "--params", str(params), "--metrics", str(committed)])


def test_bench_times_every_peer_model_at_its_batch_and_the_distributed_path(tmp_path, tiny_raw_params,
                                                                           tiny_processed):
    raw = json.loads(json.dumps(tiny_raw_params))
    raw["run"]["profile"] = "gpu"  # the command refuses other profiles' params; tiny sizes keep this fast
    params = tmp_path / "gpu.yaml"
    params.write_text(yaml.safe_dump(raw))
    metrics = tmp_path / "metrics"
    assert main(["bench", "--params", str(params), "--metrics", str(metrics), "--steps", "2",
                 "--data", str(tiny_processed)]) == 0
    written = json.loads((metrics / "gpu" / "bench_peers.json").read_text())
    from genzoo.targets import load_targets

    peers = {(p.model, p.batch) for p in load_targets().peers}
    plain = {(r["model"], r["batch_size"]) for r in written["results"] if r["path"] == "plain"}
    assert plain == peers and len(peers) == 4
    assert [(r["model"], r["batch_size"]) for r in written["results"] if r["path"] != "plain"] == [("dcgan", 64)]
    assert written["provenance"]["command"] == f"python pipeline/gpu_plan.py bench --params {params} --steps 2"


def test_a_recipe_is_a_part_of_its_own_priced_and_placed_from_its_own_runs(tmp_path, committed, monkeypatch):
    """vae@paper: the recipe's epochs and batch, its paper targets, and only runs that record that recipe."""
    recipes = {"paper": {"vae": {"epochs": 10, "batch_size": 20}}}
    targets = tmp_path / "targets.yaml"
    targets.write_text(yaml.safe_dump({"targets": [{"model": "vae", "profiles": ["gpu"], "against": "paper"},
                                                   {"model": "vae", "profiles": ["gpu"]}]}))
    parts = {p.name: p for p in plan(PARAMS, committed, targets, MODELS, recipes)}
    paper = parts["vae@paper"]
    assert (paper.epochs, paper.steps_per_epoch, paper.targets, paper.state) == (10, 55000 // 20, 1, "pending")
    assert paper.steps_per_s is None  # the profile's vae runs say nothing of the paper recipe's speed
    assert parts["vae"].targets == 2 and parts["vae"].state == "partial"

    _snapshot(committed, "paper", {"recipe": "paper", "models": {"vae": {
        "recipe": "paper", "profile_epochs": 10, "epochs": 10, "steps_per_s": 800.0}}})
    parts = {p.name: p for p in plan(PARAMS, committed, targets, MODELS, recipes)}
    assert parts["vae@paper"].state == "done" and parts["vae@paper"].steps_per_s == 800.0
    assert parts["vae"].state == "partial" and parts["vae"].epochs_capped == 30  # ours: as before

    import gpu_models

    called = []
    monkeypatch.setattr(gpu_models, "main", lambda argv: called.append(argv) or 0)
    pending = [p for p in plan(PARAMS, committed, targets, MODELS, recipes) if p.name == "vae@paper"]
    pending[0].state = "pending"
    monkeypatch.setattr("gpu_plan.plan", lambda *args: pending)
    params = tmp_path / "gpu.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    assert main(["run", "--budget", "60", "--params", str(params), "--metrics", str(committed)]) == 0
    assert called == [["vae", "--budget", "60", "--out", str(committed / "gpu" / "vae_paper"), "--checkpoints",
                       ".gpu/checkpoints", "--recipe", "paper", "--params", str(params)]]
