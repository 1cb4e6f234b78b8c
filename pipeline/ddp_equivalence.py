"""Which models train on N ranks exactly as one process would: every registered model at the tests' tiny size,
a few steps on CPU, one plain process at batch B against two torchrun ranks at B/2 each (gloo), through the one
`fit()`. Writes the largest relative difference of the logged losses and the largest absolute difference of any
weight or buffer, per model, and prints the table docs/notes/distributed.md shows.

    python pipeline/ddp_equivalence.py [--steps 4] [--batch 16] [--out metrics/probes/ddp_equivalence.json]

Runs tests/dist_worker.py (the tests' tiny models and data): about 15 s per model on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "pipeline")]

# Within float32 rounding (the ranks' products are smaller and their sums run in another order; Adam can turn a
# rounding-sized gradient into a step of up to its lr): the same training.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-3


def _run(launcher: list[str], params: Path, model: str, out: Path, batch: int, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}", "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1", "GENZOO_MLFLOW": "off"}
    run = subprocess.run([*launcher, str(ROOT / "tests" / "dist_worker.py"), str(params), model, str(out),
                          str(batch), str(steps)], env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{model}: {' '.join(launcher)} failed:\n{run.stderr[-3000:]}")
    return torch.load(out, weights_only=True)


def compare(one: dict, two: dict) -> dict[str, float]:
    losses = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-3) for a, b in zip(one["history"], two["history"])
                 for k in a if k != "step" and not k.endswith("steps_per_s"))
    weights = max((one["state"][k].double() - two["state"][k].double()).abs().max().item() for k in one["state"])
    return {"loss_rel": losses, "weight_abs": weights,
            "same": bool(losses <= LOSS_RTOL and weights <= WEIGHT_ATOL)}


def main(steps: int = 4, batch: int = 16, out: Path = Path("metrics/probes/ddp_equivalence.json"),
         models: str = typer.Option("", help="Comma-separated registry names; default: every generative model.")):
    from helpers import composed

    from genzoo.engine.io import write_text
    from genzoo.engine.tracking import command_line, record_provenance
    from genzoo.models.registry import GENERATIVE

    names = [m for m in models.split(",") if m] or list(GENERATIVE)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        params = folder / "params.yaml"
        params.write_text(yaml.safe_dump(composed(folder, "profile=tiny", "engine.device=cpu")))
        for name in names:
            one = _run([sys.executable], params, name, folder / "one.pt", batch, steps)
            two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
                       params, name, folder / "two.pt", batch, steps)
            rows[name] = compare(one, two)
            print(f"| {name} | {rows[name]['loss_rel']:.1e} | {rows[name]['weight_abs']:.1e} | "
                  f"{'same' if rows[name]['same'] else 'differs'} |", flush=True)
    record = {"steps": steps, "batch": batch, "ranks": 2, "loss_rtol": LOSS_RTOL, "weight_atol": WEIGHT_ATOL,
              "models": rows, "provenance": record_provenance("cpu", command_line())}
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
