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
import time
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


def parse_recipe(model: str, text: str) -> tuple[str, list[str]]:
    """"name:key=value,key=value" -> (name, overrides of the `model` section); "name:" is the profile as it is."""
    name, _, overrides = text.partition(":")
    return name, [f"{model}.{kv}" for kv in overrides.split(",") if kv]


def probe_parser(doc: str):
    """The arguments every recipe probe takes (a probe adds its own)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for name in ("--data", "--derived", "--models", "--out"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", action="append", default=[], help="name:key=value,... (repeatable)")
    parser.add_argument("--rank", action="store_true", help="only rank the seeds' rows already under --out")
    return parser


def probe_recipes(model: str, recipes: list[str], seed: int, out: Path, data: Path, derived: Path,
                  evaluator: Path, score) -> dict:
    """A recipe probe's runs on one seed, one process thread (as a stage of the two-at-a-time DAG): each recipe
    trained by side_run, then `score(model_file, evaluator_file)` -> its validation scores. Rows accumulate in
    out/seed_<seed>/rows.json after each recipe (a stopped probe keeps what it finished, and a later call adds its
    recipes to the rows there: a recipe run again replaces its row; each row records its own commit and command);
    weights are dropped."""
    from genzoo.engine.io import write_json
    from genzoo.engine.tracking import command_line, record_provenance

    done = out / f"seed_{seed}" / "rows.json"
    rows = {}
    if done.exists():  # rows written before rows kept their own provenance carry the file's
        before = json.loads(done.read_text())
        rows = {name: {"provenance": before.get("provenance"), **row} for name, row in before["rows"].items()}
    for name, overrides in (parse_recipe(model, text) for text in recipes):
        run = out / f"seed_{seed}" / name
        started = time.time()
        summary = side_run(model, run, [*overrides, f"run.seed={seed}", "engine.threads=1"], data, evaluator,
                           derived=derived, log=run / "train.log")
        models = run / "models"
        scores = score(models / model / "model.pt", models / "evaluator" / "model.pt")
        rows[name] = {"overrides": overrides, "train_seconds": summary["train_seconds"], "started": started,
                      "val": {k: v for k, v in summary["final"].items() if k.startswith("val/")},
                      "validation_scores": scores, "provenance": record_provenance("cpu", command_line())}
        shutil.rmtree(models)  # the params and scores say what was run
        print(f"{name}: {json.dumps(scores)}", flush=True)
        write_json(done, {"rows": rows, "provenance": rows[name]["provenance"]})
    return rows


def validation_halves(derived: Path, name: str) -> dict[str, dict]:
    """The validation split of derived set `name` cut in two, as {"val": first half, "test": second half}: a probe
    hands it to a model's scoring in the place of its val and test splits, so its rule reads no test image."""
    from genzoo.data.derived import load_set

    val = load_set(derived, name, "val")
    half = len(next(iter(val.values()))) // 2
    return {"val": {k: v[:half] for k, v in val.items()}, "test": {k: v[half:] for k, v in val.items()}}


def seed_rows(out: Path) -> tuple[dict[str, dict], list[str]]:
    """Every seed's rows under `out` ({seed folder: rows}) and the recipes that every seed ran, in name order (the
    files sort their keys; a row's `started` says when it ran)."""
    seeds = {p.parent.name: json.loads(p.read_text())["rows"] for p in sorted(out.glob("seed_*/rows.json"))}
    if not seeds:
        raise SystemExit(f"{out}: no seed_*/rows.json to rank")
    return seeds, [n for n in next(iter(seeds.values())) if all(n in rows for rows in seeds.values())]


def timed_seed_rows(out: Path, reference: str = "cpu"):
    """seed_rows for a rule with a time budget: every seed must have run the `reference` recipe (the budget's
    unit). Returns (seeds, names, mean), mean(name, value) being the mean over the seeds of
    value(validation scores, row) for recipe `name`."""
    seeds, names = seed_rows(out)
    if reference not in names:
        raise SystemExit(f"{out}: every seed needs the `{reference}` recipe, the time budget's reference")

    def mean(name: str, value) -> float:
        return sum(value(rows[name]["validation_scores"], rows[name]) for rows in seeds.values()) / len(seeds)

    return seeds, names, mean


def time_ratios(rows: dict[str, dict], reference: str = "cpu") -> dict[str, float]:
    """One seed's training time of each recipe over the `reference` recipe's. Where the seed also ran the reference
    last (`<reference>_again`), each recipe's reference time is interpolated between the two runs by its start
    time: a host that slows while a probe runs (the same run took 142 s, then 191 s) inflates late rows, and a
    budget read off the first run alone would be strict on them. Rows without start times read the first run."""
    first, again = rows[reference], rows.get(f"{reference}_again")
    timed = again is not None and all("started" in r for r in rows.values()) and again["started"] > first["started"]

    def reference_seconds(row: dict) -> float:
        if not timed:
            return first["train_seconds"]
        w = min(max((row["started"] - first["started"]) / (again["started"] - first["started"]), 0.0), 1.0)
        return (1 - w) * first["train_seconds"] + w * again["train_seconds"]

    return {name: row["train_seconds"] / reference_seconds(row) for name, row in rows.items()}


def write_ranking(out: Path, seeds: dict, table: dict, chosen: str | None, rule: str, note: str) -> int:
    """out/ranking.json: the rule's table over the seeds and its choice, with the command that ranked them."""
    from genzoo.engine.io import write_json
    from genzoo.engine.tracking import command_line, record_provenance

    write_json(out / "ranking.json", {"seeds": sorted(seeds), "table": table, "chosen": chosen, "rule": rule,
                                      "note": note, "provenance": record_provenance("cpu", command_line())})
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    args, output = sys.argv[1:], ROOT / "params.yaml"
    if args[:1] == ["--out"]:
        if len(args) < 2:
            sys.exit("--out needs a file")
        output, args = Path(args[1]), args[2:]
        output.parent.mkdir(parents=True, exist_ok=True)
    compose(output, args)
    print(f"wrote {output}" + (f" with {' '.join(args)}" if args else ""))
