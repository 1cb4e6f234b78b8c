"""Run by tests/test_distributed.py as one plain process or as torchrun's ranks: fit one tiny registry model on
tiny images for a few steps and save (rank 0) its weights and logged losses.

    python tests/dist_worker.py PARAMS MODEL OUT BATCH STEPS [key=value ...]
    torchrun --nproc_per_node=2 tests/dist_worker.py ...
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from helpers import model_batch, tiny_model

from genzoo.engine.distributed import process_group
from genzoo.engine.training import fit
from genzoo.models.registry import load_params


def main(params_file: str, name: str, out: str, batch: str, steps: str, *changes: str) -> None:
    params = load_params(Path(params_file), models=[name, "evaluator"])
    engine = dataclasses.replace(params.engine, device="cpu", log_every=1, eval_every=10**6,
                                 checkpoint_every=10**6, monitor_samples=0, threads=1)
    extra = {k: type(getattr(params.model(name), k))(v) for k, v in (c.split("=", 1) for c in changes)}
    with process_group("cpu") as world:
        model = tiny_model(name, params, seed=0, batch_size=int(batch), epochs=100, **extra)
        config = model.config
        result = fit(model, model_batch(model, 64, seed=3), config=config, engine=engine, seed=0, stop_after=int(steps),
                     progress=False, label=name)
        if world.rank == 0:
            torch.save({"state": model.state_dict(), "history": result.history, "world": world.size}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
