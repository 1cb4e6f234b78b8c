"""`genzoo bench`: how fast the shared engine trains a model on this machine (a benchmark, never a test).

Times the real training loop (`fit`, data on the device, no per-step sync) after a warm-up, and converts
steps/s into seconds per epoch of the training split.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch

from genzoo.data.loading import labelled_subset, load_meta
from genzoo.engine.distributed import single_rank_group
from genzoo.engine.io import write_json
from genzoo.engine.tracking import record_provenance
from genzoo.engine.training import describe_device, eager_reason, fit, resolve_device
from genzoo.models.registry import TRAINABLE, build_model
from genzoo.params import Params
from genzoo.stages.train import attach_perceptual, model_splits

WARMUP_STEPS = 30


def time_training(name: str, params: Params, train: dict, meta: dict, batch_size: int, steps: int,
                  cuda_graphs: bool, models: Path | None = None, distributed_path: bool = False) -> dict:
    """`models`: where the trained models are, for one whose losses look through a frozen network
    (`perceptual_network`: EnhanceNet's).
    `distributed_path`: train in a process group of one rank, so the data-parallel path's own cost shows."""
    device = resolve_device(params.engine.device)
    config = dataclasses.replace(params.model(name), batch_size=batch_size, epochs=1,
                                 max_steps=0)  # a profile's cap would cut the timed run short and inflate steps/s
    engine = dataclasses.replace(params.engine, log_every=10**9, eval_every=10**9, checkpoint_every=10**9,
                                 cuda_graphs=cuda_graphs)
    model = build_model(name, config, tuple(meta["image_shape"]), len(meta["classes"]), params.run.seed)
    attach_perceptual(name, model, models, device)
    if model.few_labels:  # a semi-supervised model trains with the shared few labels, as its stage hands them over
        labelled = labelled_subset(train["y"], params.data.labelled_per_class, params.data.labelled_seed)
        model.attach_labelled(train["x"][labelled].to(device), train["y"][labelled].to(device))
    n = len(next(iter(train.values())))
    rows = batch_size * model.batches_per_step  # a GAN with k D steps takes k batches per step

    def run(count: int) -> float:
        idx = torch.arange(rows * count) % n  # exactly `count` full steps, one epoch
        subset = {k: v[idx].to(device) for k, v in train.items()}
        return fit(model, subset, config=config, engine=engine, seed=params.run.seed, progress=False).seconds

    with single_rank_group(device) if distributed_path else contextlib.nullcontext():
        run(WARMUP_STEPS)  # kernels, allocator, autotuning and (when on) compilation
        seconds = run(steps)
    steps_per_s = steps / seconds
    return {"model": name, "device": describe_device(device), "batch_size": batch_size, "steps": steps,
            "steps_per_s": round(steps_per_s, 1), "images_per_s": round(steps_per_s * batch_size),
            "seconds_per_epoch": round(n // rows / steps_per_s, 3), "steps_per_epoch": n // rows, "train_images": n,
            "seconds_per_60k_images": round(60000 / rows / steps_per_s, 3),  # the usual "epoch" of other code
            "precision": params.engine.precision_on(device, config), "compile": params.engine.compile,
            "cuda_graphs": cuda_graphs and device.type == "cuda" and not distributed_path
            and eager_reason(config) is None,  # fit() trains a momentum ramp eagerly whatever the engine says
            "path": "distributed, 1 rank" if distributed_path else "plain"}


def run_bench(names: list[str], params: Params, data: Path, steps: int, batch_sizes: list[int], out: Path | None,
              compare_eager: bool = False, derived: Path = Path("data/derived"), models: Path = Path("models"),
              precision: str | None = None, distributed_path: bool = False) -> list:
    """Each model on the data it trains on (the base images or its derived set). `compare_eager` also times the
    same loop without CUDA graphs (plain eager PyTorch, data still on the device); `precision` (fp32 or bf16)
    replaces the params' precision on whichever device runs, a model section's own `cpu_precision` included.
    `distributed_path` also times each one on the data-parallel path with one rank (genzoo.engine.distributed: what
    the path itself costs)."""
    if precision is not None:
        params = dataclasses.replace(
            params, engine=dataclasses.replace(params.engine, precision=precision, cpu_precision=precision),
            models={k: dataclasses.replace(c, cpu_precision="engine") if hasattr(c, "cpu_precision") else c
                    for k, c in params.models.items()})
    meta = load_meta(data)
    modes = [params.engine.cuda_graphs] + ([False] if compare_eager and params.engine.cuda_graphs else [])
    rows = []
    print(f"{'model':<18} {'device':<28} {'precision':>9} {'graphs':>6} {'batch':>6} {'steps/s':>9} "
          f"{'images/s':>10} {'s/epoch':>8}  path", flush=True)
    for name in names:
        train = model_splits(TRAINABLE[name], data, derived)["train"]
        for batch_size in batch_sizes or [params.model(name).batch_size]:
            for graphs, ranks in [(g, False) for g in modes] + ([(False, True)] if distributed_path else []):
                r = time_training(name, params, train, meta, batch_size, steps, graphs, models, ranks)
                rows.append(r)
                print(f"{r['model']:<18} {r['device']:<28} {r['precision']:>9} {str(r['cuda_graphs']):>6} "
                      f"{r['batch_size']:>6} {r['steps_per_s']:>9} {r['images_per_s']:>10} "
                      f"{r['seconds_per_epoch']:>8}  {r['path']}", flush=True)
    if out is not None:
        device = resolve_device(params.engine.device)
        write_json(out, {"results": rows, "provenance": record_provenance(device)})
    return rows
