"""Rewrite params.yaml from pipeline/conf with DVC's own Hydra composition (the same code `dvc exp run -S` runs).

    python pipeline/compose.py                 # the default (cpu) profile: what main commits
    python pipeline/compose.py profile=gpu     # any Hydra overrides
    python pipeline/compose.py --out .gpu/gpu.yaml profile=gpu   # elsewhere, params.yaml untouched
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]


def compose(output: Path, overrides: list[str]) -> None:
    compose_and_dump(output, str(ROOT / "pipeline" / "conf"), None, "config", str(ROOT), overrides)


def side_run(model: str, run: Path, overrides: list[str], data: Path, evaluator: Path,
             derived: Path | None = None, log: Path | None = None) -> dict:
    """A probe's training of `model` in its own folder `run`: the default profile with `overrides` composed to
    run/params.yaml, the trained `evaluator` folder copied to run/models, `genzoo train` with MLflow off (output
    to `log` if given), no checkpoints kept on the way. Returns its training summary (run/metrics/<model>.json)."""
    params, models = run / "params.yaml", run / "models"
    run.mkdir(parents=True, exist_ok=True)
    compose(params, [*overrides, "engine.checkpoint_every=1000000"])
    shutil.copytree(evaluator, models / "evaluator", dirs_exist_ok=True)
    command = [sys.executable, "-m", "genzoo", "train", model, "--params", str(params), "--data", str(data),
               "--models", str(models), "--metrics", str(run / "metrics"),
               *(["--derived", str(derived)] if derived is not None else [])]
    env = {**os.environ, "GENZOO_MLFLOW": "off"}
    with open(log, "w") if log is not None else contextlib.nullcontext() as out:  # None: this process's streams
        subprocess.run(command, check=True, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)
    return json.loads((run / "metrics" / f"{model}.json").read_text())


if __name__ == "__main__":
    args, output = sys.argv[1:], ROOT / "params.yaml"
    if args[:1] == ["--out"]:
        if len(args) < 2:
            sys.exit("--out needs a file")
        output, args = Path(args[1]), args[2:]
        output.parent.mkdir(parents=True, exist_ok=True)
    compose(output, args)
    print(f"wrote {output}" + (f" with {' '.join(args)}" if args else ""))
