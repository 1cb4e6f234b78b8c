"""The bodies of the pipeline stages `download`, `preprocess` and `train@<model>`: parameters in, files out.

The CLI only parses paths and modes and calls these; each reads params.yaml through `genzoo.params`, so a bad
parameter stops it before any work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from genzoo.data.download import download, mirror_folders
from genzoo.data.loading import load_meta, load_split
from genzoo.data.preprocess import preprocess
from genzoo.metrics.modes import sample_modes
from genzoo.models import TRAINABLE, build_model, load_model, save_model
from genzoo.models.blocks import to_unit
from genzoo.params import Params
from genzoo.pictures import save_pictures
from genzoo.tracking import StageRun, provenance, write_metrics, write_plot
from genzoo.training import describe_device, fit, resolve_device, validate

PICTURE_ROWS = 2000  # test digits handed to a model's pictures()
CHECKPOINTS: Path | None = None  # None: <models>/.checkpoints; pipeline/gpu_models.py points it elsewhere


def checkpoint_dir(models: Path) -> Path:
    """Where a stage keeps its resumable checkpoints: beside the models it writes (not a DVC output: DVC deletes
    outputs before a stage re-runs), so a side run with its own `--models` never touches the pipeline's."""
    return CHECKPOINTS if CHECKPOINTS is not None else models / ".checkpoints"


def download_stage(params: Params, out: Path, offline: bool) -> None:
    files = download(params.data.dataset, out / params.data.dataset, mirror_folders(params.data.mirror),
                     use_network=not offline)
    print(f"{params.data.dataset}: {len(files)} files verified in {out / params.data.dataset}")


def preprocess_stage(params: Params, raw: Path, out: Path) -> None:
    meta = preprocess(raw / params.data.dataset, out, dataset=params.data.dataset, val_size=params.data.val_size,
                      split_seed=params.data.split_seed, binarize_seed=params.data.binarize_seed)
    print(f"{meta['dataset']}: {meta['counts']} -> {out}")


def derive_stage(params: Params, data: Path, out: Path, figures: Path) -> None:
    """The derived sets (DESIGN.md §3) and a preview grid of each for the report."""
    from genzoo.data.derived import derive, preview

    meta = derive(data, out, seed=params.data.derive_seed)
    save_pictures(preview(out), figures)
    print(f"derived sets in {out}: " + "; ".join(f"{name} {entry['counts']}" for name, entry in meta["sets"].items()))


def fingerprint(name: str, config, params: Params, data_hash: str) -> str:
    """Identifies what a checkpoint was made with; a checkpoint of other params is never resumed."""
    key = {"model": name, "config": dataclasses.asdict(config), "data": data_hash, "seed": params.run.seed,
           "precision": params.engine.precision}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _mode_monitor(model, params: Params, models: Path, device, num_classes: int):
    """For generative models: the frozen evaluator's class histogram of samples at every eval step."""
    evaluator_file = models / "evaluator" / "model.pt"
    if not hasattr(model, "sample") or params.engine.monitor_samples == 0:
        return None
    if not evaluator_file.exists():
        print(f"note: {evaluator_file} not found, so no class histograms during training (train the evaluator first)")
        return None
    evaluator = load_model(evaluator_file, device)
    return lambda m: sample_modes(m, evaluator, params.engine.monitor_samples, num_classes)


def model_splits(model_cls, data: Path, derived: Path, device="cpu") -> dict[str, dict[str, torch.Tensor]]:
    """The train/val/test splits a model learns from: the base images, or the derived set it names in
    `dataset` (translation models: paired, superres, unpaired, multidomain, synthetic)."""
    name = getattr(model_cls, "dataset", None)
    if name is None:
        return {split: load_split(data, split, device) for split in ("train", "val", "test")}
    from genzoo.data.derived import load_set

    return {split: load_set(derived, name, split, device) for split in ("train", "val", "test")}


def attach_evaluator(model, models: Path, device) -> None:
    """Models whose losses look through the frozen evaluator (EnhanceNet's perceptual loss) get it here."""
    if getattr(model, "needs_evaluator", False):
        model.attach_evaluator(load_model(models / "evaluator" / "model.pt", device))


def stage_name(name: str) -> str:
    """The DVC stage that trains `name` (dvc.yaml: train_evaluator, train@<model>, train_translation@<model>)."""
    if name == "evaluator":
        return "train_evaluator"
    return f"train_translation@{name}" if getattr(TRAINABLE[name], "dataset", None) else f"train@{name}"


def train_stage(name: str, params: Params, data: Path, models: Path, metrics: Path,
                derived: Path = Path("data/derived"), stop_at: float | None = None) -> dict:
    """Fit one registered model, then write its weights, metrics, loss curves and pictures.

    `stop_at` (a time.monotonic() deadline) pauses the training at a checkpoint instead: fit raises Interrupted
    and nothing else is written."""
    config = params.model(name)
    meta = load_meta(data)
    device = resolve_device(params.engine.device)
    model_cls = TRAINABLE[name]
    splits = model_splits(model_cls, data, derived)
    train, val, test = splits["train"], splits["val"], splits["test"]
    model = build_model(name, config, tuple(meta["image_shape"]), len(meta["classes"]), params.run.seed)
    attach_evaluator(model, models, device)
    stage = stage_name(name)
    info = provenance(stage, params, describe_device(device), data)
    checkpoint = checkpoint_dir(models) / f"{name}.pt"
    monitor = _mode_monitor(model, params, models, device, len(meta["classes"]))
    with StageRun(stage, params, ["run", "data", "engine", name],
                  {k: info[k] for k in ("profile", "device", "commit", "dirty", "data_hash")}) as run:
        result = fit(model, train, config=config, engine=params.engine, seed=params.run.seed, val=val,
                     checkpoint=checkpoint, fingerprint=fingerprint(name, config, params, meta["data_hash"]),
                     on_log=run.log_metrics, monitor=monitor, stop_at=stop_at, label=name)
        weights = save_model(model, name, models / name / "model.pt")
        test_metrics = validate(model, {k: v.to(device) for k, v in test.items()}, 4 * config.batch_size)
        run.log_metrics(result.steps, {f"test/{k}": v for k, v in test_metrics.items()})
        model.eval()
        figures = metrics / "figures" / name
        if hasattr(model, "pictures"):
            torch.manual_seed(params.run.seed)
            if getattr(model_cls, "dataset", None) is None:
                # models draw the first rows they need (a 10x10 grid at most); the AAE's 2-D code scatter all
                shown = {"test": to_unit(test["x"][:PICTURE_ROWS]), "test_y": test["y"][:PICTURE_ROWS],
                         "train": train["x"]}
            else:  # a derived set: its first 100 test rows, every key, as stored
                shown = {k: v[:100] for k, v in test.items()}
            save_pictures(model.pictures({k: v.to(device) for k, v in shown.items()}), figures)
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
