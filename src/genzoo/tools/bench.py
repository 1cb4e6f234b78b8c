"""`genzoo bench`: how fast the shared engine trains a model on this machine (a benchmark, never a test).

Times the real training loop (`fit`, data on the device, no per-step sync) after a warm-up, and converts
steps/s into seconds per epoch of the training split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genzoo.data.loading import load_meta, load_split
from genzoo.engine.io import write_json
from genzoo.engine.tracking import record_provenance
from genzoo.engine.training import describe_device, fit, resolve_device
from genzoo.models.registry import build_model
from genzoo.params import Params

WARMUP_STEPS = 30


def time_training(name: str, params: Params, train: dict, meta: dict, batch_size: int, steps: int,
                  cuda_graphs: bool) -> dict:
    device = resolve_device(params.engine.device)
    config = dataclasses.replace(params.model(name), batch_size=batch_size, epochs=1)
    engine = dataclasses.replace(params.engine, log_every=10**9, eval_every=10**9, checkpoint_every=10**9,
                                 cuda_graphs=cuda_graphs)
    model = build_model(name, config, tuple(meta["image_shape"]), len(meta["classes"]), params.run.seed)
    n = len(train["x"])
    rows = batch_size * model.batches_per_step  # a GAN with k D steps takes k batches per step

    def run(count: int) -> float:
        idx = torch.arange(rows * count) % n  # exactly `count` full steps, one epoch
        subset = {k: v[idx].to(device) for k, v in train.items()}
        return fit(model, subset, config=config, engine=engine, seed=params.run.seed, progress=False).seconds

    run(WARMUP_STEPS)  # kernels, allocator, autotuning and (when on) compilation
    seconds = run(steps)
    steps_per_s = steps / seconds
    return {"model": name, "device": describe_device(device), "batch_size": batch_size, "steps": steps,
            "steps_per_s": round(steps_per_s, 1), "images_per_s": round(steps_per_s * batch_size),
            "seconds_per_epoch": round(n // rows / steps_per_s, 3), "steps_per_epoch": n // rows, "train_images": n,
            "seconds_per_60k_images": round(60000 / rows / steps_per_s, 3),  # the usual "epoch" of other code
            "precision": params.engine.precision, "compile": params.engine.compile,
            "cuda_graphs": cuda_graphs and device.type == "cuda"}


def run_bench(name: str, params: Params, data: Path, steps: int, batch_sizes: list[int], out: Path | None,
                compare_eager: bool = False) -> list:
    """`compare_eager` also times the same loop without CUDA graphs (plain eager PyTorch, data still on the device)."""
    meta = load_meta(data)
    train = load_split(data, "train")
    modes = [params.engine.cuda_graphs] + ([False] if compare_eager and params.engine.cuda_graphs else [])
    rows = [time_training(name, params, train, meta, bs, steps, graphs)
            for bs in (batch_sizes or [params.model(name).batch_size]) for graphs in modes]
    print(f"{'model':<10} {'device':<28} {'graphs':>6} {'batch':>6} {'steps/s':>9} {'images/s':>10} {'s/epoch':>8}")
    for r in rows:
        print(f"{r['model']:<10} {r['device']:<28} {str(r['cuda_graphs']):>6} {r['batch_size']:>6} "
              f"{r['steps_per_s']:>9} {r['images_per_s']:>10} {r['seconds_per_epoch']:>8}")
    if out is not None:
        device = resolve_device(params.engine.device)
        write_json(out, {"results": rows, "provenance": record_provenance(device)})
    return rows
