"""Part of the gpu profile, outside DVC, inside a fixed time budget: a snapshot for machines lent by the minute.

`make gpu` runs the whole gpu DAG (well over an hour on one GPU). When a GPU is lent for minutes, this trains the
named models with the gpu profile's params, except that each model's epochs are capped to what fits its share of
`--budget` (steps/s measured here first, with the engine's own loop), then scores them with the evaluate stage's
own code. With `--checkpoints DIR` the epochs stay the profile's instead: a model whose share runs out pauses at
a checkpoint in DIR (the engine's SIGTERM path), and a later run naming it, with DIR carried back, goes on from
there, so a model longer than one lease (PixelRNN's 60 epochs) still trains to the end, over several. (A model
that finished is in that run's snapshot and has no checkpoint left: name only the paused ones again.)
The snapshot folder holds what the report needs (evaluate.json, each model's metrics and pictures, the exact
params used) and run.json: the command, the hardware, and per model the profile's epochs beside the epochs run.

    GENZOO_DATA_MIRROR=/path/to/idx python pipeline/gpu_models.py --budget 270 --out metrics/gpu/likelihood \\
        cvae aae flow_vae pixelcnn --bench-only pixelrnn

The gpu params are composed from pipeline/conf with profile=gpu (DVC's Hydra code); on a machine without dvc,
compose them beforehand (`python pipeline/compose.py --out .gpu/gpu.yaml profile=gpu`) and pass the file with
--params: the same params. Data, models and checkpoints go to `--work` (default .gpu/work,
git-ignored), never to the DVC outputs; the data comes from the offline mirror (GENZOO_DATA_MIRROR or data.mirror).
A copy of the checkout whose .git is not its commit's can name the commit with GENZOO_COMMIT.

`--recipe NAME` trains the named models at a recipe of pipeline/conf/recipes.yaml instead of the profile's own
(`paper`: the paper's architecture, optimizer, schedule and data, as far as it states them). The recipe's
overlay replaces those keys of each model's section; every model entry of run.json and of the snapshot's
evaluate.json records `recipe` (what the report judges a paper's number on), evaluate.json's entry of each
likelihood model the `train_binarization` its config trained on (the evaluate stage writes it), and its
checkpoints live in a folder of their own, so a recipe never resumes from another's weights.

A DVC stage of STAGE_PARTS (Triple-GAN: its seeds and C's test error) runs as a part too, with --checkpoints
only (its epochs are kept, paused and resumed over windows like a model's; its steps count C's pre-training, then
the game), and without its baseline (the classifier alone: thousands of eager steps per seed that would outlast
a window; the DVC stage trains it). Its file (triplegan.json) goes into the snapshot with the `recipe` it ran:

    python pipeline/gpu_models.py --recipe paper --budget 480 --checkpoints .gpu/checkpoints \\
        --out metrics/gpu/triplegan_paper triplegan
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import yaml

SAFETY = 0.8  # the measured loop has no validation, monitor or checkpoint: leave them a fifth of each share
STAGE_PARTS = ("triplegan",)  # DVC stages this script also runs as parts (--checkpoints only, no baseline)
RECIPES = Path(__file__).resolve().parent / "conf" / "recipes.yaml"


def load_recipes(path: Path = RECIPES) -> dict[str, dict[str, dict]]:
    """{recipe: {model: overlay}} from recipes.yaml, checked: a mapping of mappings of mappings."""
    recipes = yaml.safe_load(path.read_text()) or {}
    if not isinstance(recipes, dict) or not all(isinstance(models, dict) and
                                                all(isinstance(o, dict) for o in models.values())
                                                for models in recipes.values()):
        sys.exit(f"{path}: expected recipe -> model -> overlay mappings")
    return recipes


def apply_recipe(raw: dict, recipe: str, models: list[str], recipes: dict[str, dict[str, dict]]) -> dict:
    """The params with `recipe`'s overlay on each of `models`' sections (a copy); one line naming what is wrong
    where a model has no such recipe or an overlay names a key its section does not have."""
    import copy

    if recipe not in recipes:
        sys.exit(f"unknown recipe {recipe!r}; {RECIPES.name} has: {', '.join(recipes) or 'none'}")
    missing = [name for name in models if name not in recipes[recipe]]
    if missing:
        sys.exit(f"no {recipe} recipe for {', '.join(missing)}; {RECIPES.name} has {recipe} recipes for: "
                 f"{', '.join(recipes[recipe])}")
    out = copy.deepcopy(raw)
    for name in models:
        unknown = sorted(set(recipes[recipe][name]) - set(out[name]))
        if unknown:
            sys.exit(f"{RECIPES.name}: {recipe}.{name}: {', '.join(unknown)} not in the {name} section's params")
        out[name].update(copy.deepcopy(recipes[recipe][name]))
    return out


def plan_epochs(profile_epochs: int, steps_per_s: float, steps_per_epoch: int, seconds: float) -> int:
    """The profile's epochs, or fewer: as many as `seconds` of training fit at `steps_per_s` (at least one)."""
    fit = math.floor(SAFETY * seconds * steps_per_s / steps_per_epoch)
    return max(1, min(profile_epochs, fit))


def compose_gpu_params(out: Path) -> None:
    """The gpu profile's params into `out`, through DVC's Hydra composition (pipeline/compose.py); one line where
    dvc is missing (a lent GPU): such a machine is handed a file made beforehand, with --params."""
    try:
        from compose import compose
    except ImportError as err:
        sys.exit(f"composing the gpu params needs dvc ({err}); on a machine without it pass --params, a file made "
                 "beforehand by `python pipeline/compose.py --out .gpu/gpu.yaml profile=gpu`")
    compose(out, ["profile=gpu"])


def part_share(left: float, parts_left: int, checkpoints: bool) -> float:
    """Seconds for the next of `parts_left` parts. With checkpoints a part may pause, so each takes all that is left
    in turn (the plan puts first those that fit whole); without, each is capped to an even share of it."""
    return max(0.0, left if checkpoints else left / parts_left)


def train_within(name: str, seconds: float, raw: dict, work: Path, data: Path, models: Path, metrics: Path,
                 meta: dict, train: dict, bench_steps: int, checkpoints: Path, derived: Path) -> dict:
    """Time `name`'s training steps on `train` (its training split), cap its epochs to `seconds`, train it; what
    was planned and spent."""
    from genzoo.models.registry import load_params, parse_params
    from genzoo.stages.train import train_stage
    from genzoo.tools.bench import time_training

    params = parse_params(raw)
    config = params.model(name)
    bench = time_training(name, params, train, meta, config.batch_size, bench_steps, params.engine.cuda_graphs,
                          models)
    epochs = plan_epochs(config.epochs, bench["steps_per_s"], bench["steps_per_epoch"], seconds)
    raw[name]["epochs"] = epochs
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"{name}: {bench['steps_per_s']} steps/s, {bench['seconds_per_epoch']} s/epoch; share {seconds:.0f} s "
          f"-> {epochs} of the profile's {config.epochs} epochs", flush=True)
    tic = time.time()
    result = train_stage(name, load_params(work / "params.yaml"), data, models, metrics, derived,
                         checkpoints=checkpoints)
    return {"profile_epochs": config.epochs, "epochs": epochs, "steps_per_s": bench["steps_per_s"],
            "share_s": round(seconds, 1), "stage_seconds": round(time.time() - tic, 1),
            "train_seconds": result["train_seconds"], "cuda_graphs": bench["cuda_graphs"]}


def derive_sets(params, work: Path, data: Path, datasets: list[str | None]) -> Path:
    """The derived sets the named models learn from (`datasets`: their `dataset` declarations), made once in
    `work` as the derive and strokes stages make them in data/ (the translation sets and StackGAN's captions;
    Sketch-RNN's strokes beside them); the folder to hand the stages as `derived`."""
    from genzoo.stages.derive import derive_stage
    from genzoo.stages.strokes import strokes_stage

    derived, wanted = work / "derived", set(datasets) - {None}
    # derive writes its meta.json before StackGAN's captions: a window that stopped between them made no captions
    unfinished = not (derived / "meta.json").exists() or ("captions" in wanted and
                                                          not (work / "captions" / "meta.json").exists())
    if wanted - {"strokes"} and unfinished:
        derive_stage(params, data, derived, work / "previews" / "derived")
    if "strokes" in wanted and not (work / "strokes" / "meta.json").exists():
        strokes_stage(params, data, work / "strokes", work / "raw" / "quickdraw", Path("data/quickdraw.sha256.json"),
                      work / "previews" / "strokes")  # QuickDraw's record: the checkout's, as `genzoo strokes`
    return derived


def _checkpoint_step(path: Path) -> int:
    """The step a checkpoint resumes at; 0 where there is none or it is unreadable (the engine starts afresh)."""
    from genzoo.engine.io import load_torch

    try:
        return int(load_torch(path)["step"]) if path.exists() else 0
    except Exception:
        return 0


def train_until(name: str, seconds: float, raw: dict, data: Path, models: Path, metrics: Path,
                made: dict, checkpoints: Path, derived: Path) -> dict:
    """Train `name` for the profile's epochs, or pause at its checkpoint when `seconds` run out.

    Beside the checkpoint a ledger (`<name>.runs.json`) keeps each run's hardware, commit, command, steps and
    seconds (`made`: record_provenance's fields), so a model trained over several leases, or finished elsewhere,
    says where and by which code each of its steps ran."""
    from genzoo.engine.io import write_json
    from genzoo.engine.training import Interrupted
    from genzoo.models.registry import parse_params
    from genzoo.stages.train import train_stage

    params = parse_params(raw)
    epochs = params.model(name).epochs
    folder = checkpoints
    ledger = folder / f"{name}.runs.json"
    checkpoint = folder / (_stage_checkpoint(name) or f"{name}.pt")
    runs = json.loads(ledger.read_text()) if ledger.exists() and checkpoint.exists() else []
    # where this run starts if it pauses: the ledger's last step, or a checkpoint's own from before the ledger
    start = runs[-1]["to_step"] if runs else _checkpoint_step(checkpoint)
    tic = time.time()

    def this_run(start: int, stop: int) -> dict:
        return {**{k: made[k] for k in ("hardware", "commit", "dirty", "command")},
                "from_step": start, "to_step": stop, "seconds": round(time.time() - tic, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    try:
        if name in STAGE_PARTS:
            result = train_stage_part(name, params, data, models, metrics, time.monotonic() + seconds, checkpoints)
        else:
            result = train_stage(name, params, data, models, metrics, derived, stop_at=time.monotonic() + seconds,
                                 checkpoints=checkpoints)
    except Interrupted as paused:
        print(f"{name}: paused at step {paused.step} of {paused.total} after its {seconds:.0f} s", flush=True)
        runs.append(this_run(start, paused.step))
        write_json(ledger, runs)
        return {"profile_epochs": epochs, "paused_at": paused.step, "total_steps": paused.total,
                "share_s": round(seconds, 1), "stage_seconds": round(time.time() - tic, 1), "runs": runs}
    runs.append(this_run(result["resumed_from"], result["steps"]))
    ledger.unlink(missing_ok=True)
    speed = result["final"].get("train/steps_per_s")
    return {"profile_epochs": epochs, "epochs": epochs, "steps_per_s": None if speed is None else round(speed, 1),
            "resumed_from": result["resumed_from"], "share_s": round(seconds, 1),
            "stage_seconds": round(time.time() - tic, 1), "train_seconds": result["train_seconds"],
            **({"runs": runs} if len(runs) > 1 else {})}


def _stage_checkpoint(name: str) -> str | None:
    """The checkpoint file a stage part keeps in the checkpoints folder; None for a registered model's own."""
    if name not in STAGE_PARTS:
        return None
    from genzoo.stages.triplegan import CHECKPOINT

    return CHECKPOINT


def train_stage_part(name: str, params, data: Path, models: Path, metrics: Path, stop_at: float,
                     checkpoints: Path) -> dict:
    """A stage of STAGE_PARTS up to `stop_at` (Interrupted: paused at its checkpoint in `checkpoints`), without its
    baseline; its summary with `steps` counted as its pauses count them (C's pre-training, then the game)."""
    from genzoo.stages.triplegan import triplegan_stage

    summary = triplegan_stage(params, data, models, metrics, stop_at=stop_at, checkpoints=checkpoints,
                              baseline=False)
    return {**summary, "steps": summary["c_pretrain_steps"] + summary["steps"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="registered models (or stages of STAGE_PARTS, with --checkpoints), "
                        "trained in this order")
    parser.add_argument("--params", type=Path, help="a composed params file (default: pipeline/conf, profile=gpu)")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training for all models together")
    parser.add_argument("--out", type=Path, required=True, help="the snapshot folder (replaced)")
    parser.add_argument("--work", type=Path, default=Path(".gpu/work"), help="data, models and checkpoints")
    parser.add_argument("--bench-only", action="append", default=[], help="only time this model's steps (repeat)")
    parser.add_argument("--bench-steps", type=int, default=200, help="timed steps per model before planning")
    parser.add_argument("--checkpoints", type=Path, help="keep the profile's epochs; pause unfinished models at "
                        "checkpoints here, and resume from the ones found here")
    parser.add_argument("--recipe", help=f"a recipe of {RECIPES.name} (paper: the paper's) instead of the profile's")
    args = parser.parse_args(argv)
    # a window's record is its snapshot (run.json, ledgers); MLflow, absent from a lent machine's image, only when
    # asked for (GENZOO_MLFLOW=on and mlflow installed)
    os.environ.setdefault("GENZOO_MLFLOW", "off")

    from genzoo.models.registry import GENERATIVE, parse_params

    start = time.time()
    unknown = sorted(set(args.models) - set(GENERATIVE) - set(STAGE_PARTS))
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {', '.join(GENERATIVE)} and the stages {', '.join(STAGE_PARTS)}")
    stages = [name for name in args.models if name in STAGE_PARTS]
    if stages and not args.checkpoints:
        sys.exit(f"{', '.join(stages)}: a stage runs as a part with its epochs kept: pass --checkpoints DIR")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.given_params = args.params  # recorded in run.json's command; the default is the composition below
    if args.params is None:
        args.params = work / "gpu.yaml"
        compose_gpu_params(args.params)
    raw = yaml.safe_load(args.params.read_text())
    if args.recipe:
        raw = apply_recipe(raw, args.recipe, args.models, load_recipes())
    params = parse_params(raw, source=str(args.params))
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))  # what evaluate reads, epochs and all
    # not the DVC checkout's resumable checkpoints; --checkpoints: a folder that travels between leases
    checkpoints = args.checkpoints.resolve() if args.checkpoints else work / "checkpoints"
    if args.recipe:  # never resume one recipe from another's weights
        checkpoints = checkpoints / args.recipe
    run(args, raw, params, work, start, checkpoints)
    return 0


def run(args: argparse.Namespace, raw: dict, params, work: Path, start: float, checkpoints: Path) -> None:
    """Data and evaluator, then each model within its share, the bench-only timings, evaluate, the snapshot."""
    from genzoo.data.loading import load_meta, load_split
    from genzoo.engine.io import write_json
    from genzoo.engine.tracking import record_provenance
    from genzoo.engine.training import resolve_device
    from genzoo.models.registry import TRAINABLE, load_params
    from genzoo.stages.download import download_stage
    from genzoo.stages.evaluate import evaluate_stage
    from genzoo.stages.preprocess import preprocess_stage
    from genzoo.stages.train import model_splits, train_stage
    from genzoo.targets import OURS
    from genzoo.tools.bench import time_training

    data, models, metrics = work / "processed", work / "models", work / "metrics"
    device = resolve_device(params.engine.device)
    command = " ".join(["python pipeline/gpu_models.py",
                        *([f"--params {args.given_params.as_posix()}"] if args.given_params else []),
                        f"--budget {args.budget:g}", f"--out {args.out.as_posix()}",
                        *([f"--checkpoints {args.checkpoints.as_posix()}"] if args.checkpoints else []),
                        *([f"--recipe {args.recipe}"] if args.recipe else []), *args.models,
                        *(f"--bench-only {name}" for name in args.bench_only)])
    made = record_provenance(device, command)  # commit, clean or not, command, hardware: in run.json and ledgers

    if not (data / "meta.json").exists():
        download_stage(params, work / "raw", offline=True)
        preprocess_stage(params, work / "raw", data)
    named = [n for n in (*args.models, *args.bench_only) if n in TRAINABLE]  # not the stages of STAGE_PARTS
    derived = derive_sets(params, work, data, [TRAINABLE[n].dataset for n in named])
    # the evaluator, and the frozen network a model's losses look through (EnhanceNet's perceptual), once each
    frozen = ["evaluator", *(TRAINABLE[name].perceptual_network_for(vars(params.model(name))) for name in named)]
    networks = list(dict.fromkeys(n for n in frozen if n is not None))
    for name in networks:
        if not (models / name / "model.pt").exists():
            train_stage(name, params, data, models, metrics, checkpoints=checkpoints)

    meta, train = load_meta(data), load_split(data, "train")

    def training_split(name: str) -> dict:  # the base digits, loaded once, or the derived set the model learns from
        return train if TRAINABLE[name].dataset is None else model_splits(TRAINABLE[name], data, derived)["train"]

    plan, failed = {}, {}
    left = args.budget - (time.time() - start)  # the data, derived sets and frozen networks came out of it too
    for i, name in enumerate(args.models):
        share = part_share(left, len(args.models) - i, bool(args.checkpoints))
        tic = time.time()
        for graphs in dict.fromkeys([params.engine.cuda_graphs, False]):  # once more eager if a graph fails
            raw["engine"]["cuda_graphs"] = graphs
            try:
                if args.checkpoints:
                    plan[name] = train_until(name, share, raw, data, models, metrics, made, checkpoints, derived)
                else:
                    plan[name] = train_within(name, share, raw, work, data, models, metrics, meta,
                                              training_split(name), args.bench_steps, checkpoints, derived)
                break
            except Exception as err:  # one model's failure spares the rest
                failed[name if graphs == params.engine.cuda_graphs else f"{name} (eager)"] = \
                    f"{type(err).__name__}: {err}"
                traceback.print_exc()
        raw["engine"]["cuda_graphs"] = params.engine.cuda_graphs
        left -= time.time() - tic
    timed = {}
    for name in args.bench_only:  # steps/s of models left for a later lease, to plan it
        try:
            timed[name] = time_training(name, params, training_split(name), meta, params.model(name).batch_size,
                                        args.bench_steps, params.engine.cuda_graphs, models)
        except Exception as err:
            failed[name] = f"{type(err).__name__}: {err}"

    trained = [name for name in args.models if name in plan and "paused_at" not in plan[name]]
    scored = [name for name in trained if name not in STAGE_PARTS]  # a stage's numbers are in its own file
    tic = time.time()
    evaluate_stage(load_params(work / "params.yaml"), data, models, metrics, derived, only=scored)
    evaluate_seconds = time.time() - tic

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "figures").mkdir(parents=True)
    (out / "plots").mkdir()
    for name in [*networks, *trained]:
        shutil.copy(metrics / f"{name}.json", out / f"{name}.json")
    recipe = args.recipe or OURS
    scores = json.loads((metrics / "evaluate.json").read_text())
    for name in scored:  # which recipe made each number (evaluate records the binarization it trained on)
        scores["models"][name]["recipe"] = recipe
    write_json(out / "evaluate.json", scores)
    for name in trained:
        if name in STAGE_PARTS:  # a stage's own file: the recipe at its top (what the report reads there)
            write_json(out / f"{name}.json", {**json.loads((out / f"{name}.json").read_text()), "recipe": recipe})
    for name, entry in plan.items():
        entry["recipe"] = recipe
    for name in trained:
        if (metrics / "figures" / name).exists():
            shutil.copytree(metrics / "figures" / name, out / "figures" / name)
    for csv in (metrics / "plots").glob("*.csv"):
        if csv.stem.rsplit("_", 1)[0] in trained:
            shutil.copy(csv, out / "plots" / csv.name)
    shutil.copy(work / "params.yaml", out / "params.yaml")
    record = {**made, "wall_seconds": round(time.time() - start), "evaluate_seconds": round(evaluate_seconds),
              "budget_seconds": args.budget, "recipe": recipe, "models": plan, "failed": failed,
              "bench_only": {name: {k: r[k] for k in ("batch_size", "steps_per_s", "seconds_per_epoch", "cuda_graphs")}
                             for name, r in timed.items()},
              "checkpoints": bool(args.checkpoints),
              "note": "the gpu profile's params, epochs and all; a model unfinished in its share paused at a "
                      "checkpoint and resumed by the next run" if args.checkpoints else
                      "the gpu profile's params with each model's epochs capped to its share of the budget"}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a lent machine's copy: genzoo not installed
    raise SystemExit(main())
