"""The `train` stage (`train@<model>` in dvc.yaml, `genzoo train <model>`): fit one registered model with the
shared engine, then write its weights, metrics, loss curves and pictures.

Also the pieces other stages that fit models share: where checkpoints live, what identifies one, which data a
model learns from, and the evaluator's class histogram during training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from genzoo.data.derived import not_applicable
from genzoo.data.loading import load_meta, load_split
from genzoo.data.naming import naming
from genzoo.engine.distributed import World, process_group
from genzoo.engine.errors import GenzooError
from genzoo.engine.io import write_text
from genzoo.engine.pictures import save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics, write_plot
from genzoo.engine.training import checkpoint_run_id, describe_device, fit, resolve_device, validate
from genzoo.metrics.modes import sample_modes
from genzoo.models.blocks import to_unit
from genzoo.models.registry import EVALUATOR, FROZEN, TRAINABLE, build_model, load_model, save_model
from genzoo.params import Params


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry models `genzoo train <target>` runs: the model, the frozen evaluator it is watched through,
    and the frozen network its losses look through when it declares one (`perceptual_network`)."""
    if target is None:
        raise ValueError("train: which model?")
    if target in FROZEN:
        return [target]
    return [target, EVALUATOR, *filter(None, [TRAINABLE[target].perceptual_network_for(raw.get(target) or {})])]

PICTURE_ROWS = 2000  # test digits handed to a model's pictures()


def checkpoint_dir(models: Path, override: Path | None = None) -> Path:
    """Where a stage keeps its resumable checkpoints: beside the models it writes (not a DVC output: DVC deletes
    outputs before a stage re-runs), so a side run with its own `--models` never touches the pipeline's.
    `override` is a caller's own folder (the GPU part runner keeps checkpoints across device windows)."""
    return override if override is not None else models / ".checkpoints"


def fingerprint(name: str, config, params: Params, data_hash: str, processes: int = 1) -> str:
    """Identifies what a checkpoint was made with; a checkpoint of other params, or of another number of
    data-parallel ranks, is never resumed. The model's CPU precision enters resolved (its section's setting, or the
    engine's), not as the section spells it."""
    settings = dataclasses.asdict(config)
    settings.pop("cpu_precision", None)  # the resolved value below stands for it
    key = {"model": name, "config": settings, "data": data_hash, "seed": params.run.seed,
           "precision": params.engine.precision}
    if processes > 1:
        key["processes"] = processes
    cpu_precision = params.engine.cpu_precision_for(config)
    if cpu_precision != "fp32":  # only then: the checkpoints of earlier fp32 CPU runs still resume
        key["cpu_precision"] = cpu_precision
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def mode_monitor(model, params: Params, models: Path, device, num_classes: int):
    """For models that declare `samples`: the frozen evaluator's class histogram of samples at every eval step."""
    evaluator_file = models / "evaluator" / "model.pt"
    if not model.samples or params.engine.monitor_samples == 0:
        return None
    if not evaluator_file.exists():
        print(f"note: {evaluator_file} not found, so no class histograms during training (train the evaluator first)")
        return None
    evaluator = load_model(evaluator_file, device)
    return lambda m: sample_modes(m, evaluator, params.engine.monitor_samples, num_classes)


def model_splits(model_cls, data: Path, derived: Path, device="cpu") -> dict[str, dict[str, torch.Tensor]]:
    """The train/val/test splits a model learns from: the base images, or the derived set it declares in
    `dataset` (translation models: paired, superres, unpaired, multidomain, synthetic; strokes, captions)."""
    name = model_cls.dataset
    if name is None:
        return {split: load_split(data, split, device) for split in ("train", "val", "test")}
    from genzoo.data.derived import load_set

    return {split: load_set(derived, name, split, device) for split in ("train", "val", "test")}


def attach_perceptual(name: str, model, models: Path | None, device) -> None:
    """Models whose losses look through a frozen network (they declare `perceptual_network`) get it here; a
    missing network names the stage that trains it (`models` None: no trained models at hand)."""
    network = model.perceptual_network_for(vars(model.config))
    if network is None:
        return
    if models is None or not (models / network / "model.pt").exists():
        raise GenzooError(f"{name} trains through the frozen {network} network: run `dvc repro "
                          f"{stage_name(network)}` first")
    model.attach_perceptual(load_model(models / network / "model.pt", device))


def stage_name(name: str) -> str:
    """The DVC stage that trains `name` (dvc.yaml: train_evaluator, train@<model>, train_translation@<model>)."""
    if name in FROZEN:
        return f"train_{name}"
    return f"train_translation@{name}" if TRAINABLE[name].dataset else f"train@{name}"


def train_stage(name: str, params: Params, data: Path, models: Path, metrics: Path,
                derived: Path = Path("data/derived"), stop_at: float | None = None,
                checkpoints: Path | None = None) -> dict:
    """Fit one registered model, then write its weights, metrics, loss curves and pictures.

    `stop_at` (a time.monotonic() deadline) pauses the training at a checkpoint instead: fit raises Interrupted
    and nothing else is written. `checkpoints` overrides where the resumable checkpoint lives.
    Started by torchrun (`engine.processes` > 1), every rank trains its share and only rank 0 writes."""
    with process_group(params.engine.device) as world:
        return _train_stage(name, params, data, models, metrics, derived, stop_at, checkpoints, world)


def _train_stage(name: str, params: Params, data: Path, models: Path, metrics: Path, derived: Path,
                 stop_at: float | None, checkpoints: Path | None, world: World) -> dict:
    config = params.model(name)
    meta = load_meta(data)
    device = resolve_device(params.engine.device)
    model_cls = TRAINABLE[name]
    why = not_applicable(model_cls.dataset, naming(meta))
    if why is not None:  # e.g. SimGAN's font-rendered digits on a data set of clothes
        return skip_not_applicable(name, why, params, data, models, metrics) if world.rank == 0 else {}
    splits = model_splits(model_cls, data, derived)
    train, val, test = splits["train"], splits["val"], splits["test"]
    model = build_model(name, config, tuple(meta["image_shape"]), len(meta["classes"]), params.run.seed)
    attach_perceptual(name, model, models, device)
    stage = stage_name(name)
    checkpoint = checkpoint_dir(models, checkpoints) / f"{name}.pt"
    key = fingerprint(name, config, params, meta["data_hash"], world.size)
    if world.rank != 0:  # a helper rank: trains its share of every batch and writes nothing
        fit(model, train, config=config, engine=params.engine, seed=params.run.seed, checkpoint=checkpoint,
            fingerprint=key, stop_at=stop_at, label=name, progress=False)
        return {}
    info = provenance(stage, params, describe_device(device), data)
    info["processes"] = world.size
    monitor = mode_monitor(model, params, models, device, len(meta["classes"]))
    with StageRun(stage, params, ["run", "data", "engine", name],
                  {k: info[k] for k in ("profile", "device", "commit", "dirty", "data_hash")},
                  resume=checkpoint_run_id(checkpoint, key)) as run:  # a resumed stage continues its MLflow run
        result = fit(model, train, config=config, engine=params.engine, seed=params.run.seed, val=val,
                     checkpoint=checkpoint, fingerprint=key, on_log=run.log_metrics, monitor=monitor,
                     stop_at=stop_at, label=name, run_id=run.run_id, on_checkpoint=run.flush)
        info["threads"] = result.threads  # [step, CPU threads]: engine.threads: auto shares the cores
        weights = save_model(model, name, models / name / "model.pt")
        test_metrics = validate(model, {k: v.to(device) for k, v in test.items()}, 4 * config.batch_size)
        run.log_metrics(result.steps, {f"test/{k}": v for k, v in test_metrics.items()})
        model.eval()
        figures = metrics / "figures" / name
        torch.manual_seed(params.run.seed)
        if model_cls.dataset is None:
            # models draw the first rows they need (a 10x10 grid at most); the AAE's 2-D code scatter all
            shown = {"test": to_unit(test["x"][:PICTURE_ROWS]), "test_y": test["y"][:PICTURE_ROWS],
                     "train": train["x"]}
        else:  # a derived set: its first 100 test rows, every key, as stored
            shown = {k: v[:100] for k, v in test.items()}
        grids = model.pictures({**{k: v.to(device) for k, v in shown.items()}, "classes": list(meta["classes"])})
        if grids:  # a model with nothing to show (the evaluator) gets no figures folder
            save_pictures(grids, figures)
        last = {k: v for row in result.history for k, v in row.items() if k != "step"}  # last value of each
        # training time over every run that built the kept steps (a resumed stage adds the checkpoint's)
        seconds = None if result.earlier_seconds is None else result.seconds + result.earlier_seconds
        summary = {"model": name, "test": test_metrics, "final": last, "steps": result.steps,
                   "epochs": config.epochs, "train_seconds": round(result.seconds if seconds is None else seconds, 2),
                   "seconds_per_epoch": None if seconds is None else round(seconds / max(config.epochs, 1), 3),
                   "resumed_from": result.resumed_from, "provenance": info}
        write_metrics(metrics / f"{name}.json", summary)
        write_plot(metrics / "plots" / f"{name}_train.csv", result.history, "train/")
        write_plot(metrics / "plots" / f"{name}_val.csv", result.history, "val/")
        if stage.startswith("train@"):  # a DVC plot of every train stage; only a header for a model that cannot sample
            write_plot(metrics / "plots" / f"{name}_modes.csv", result.history if monitor else [], "modes/")
        run.log_artifacts(figures, "figures")
        run.log_artifacts(weights, "model")
    checkpoint.unlink(missing_ok=True)  # the finished model is saved: the checkpoint has done its job
    return summary


# ---- a model whose data set makes no sense on this data (genzoo.data.derived.not_applicable) ---------------------

NOT_APPLICABLE_FILE = "NOT_APPLICABLE"  # in models/<name>/ and metrics/figures/<name>/: why, in one line


def skip_not_applicable(name: str, why: str, params: Params, data: Path, models: Path, metrics: Path) -> dict:
    """Train nothing: say why in one line, and write the outputs its DVC stage declares (a weights folder and a
    figures folder holding only the reason, headers-only curves, and metrics/<name>.json with "not_applicable",
    which the evaluate and report stages show as "not applicable")."""
    stage = stage_name(name)
    info = provenance(stage, params, describe_device(resolve_device(params.engine.device)), data)
    summary = {"model": name, "not_applicable": why, "provenance": info}
    for folder in (models / name, metrics / "figures" / name):
        write_text(folder / NOT_APPLICABLE_FILE, why + "\n")
    write_metrics(metrics / f"{name}.json", summary)
    for kind in ("train", "val", *(("modes",) if stage.startswith("train@") else ())):
        write_plot(metrics / "plots" / f"{name}_{kind}.csv", [], f"{kind}/")
    print(f"{stage}: not applicable to {info['dataset']}: {why}")
    return summary
