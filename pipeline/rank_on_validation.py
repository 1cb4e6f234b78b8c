"""Rank a probe's runs on their validation numbers alone: the last value of one column of each run's
validation curve (`plots/<model>_val.csv`, written by `genzoo train` on the validation split), best first.

A recipe is chosen on validation, never on test (issue 31): this re-reads a committed probe's own curves and
prints the ranking as a markdown table; test numbers are not read.

    python pipeline/rank_on_validation.py metrics/probes/flow_vae_gpu_recipe flow_vae elbo --higher \
        --group cos40_ --group cpu_ --group k
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def last_value(curve: Path, column: str) -> tuple[int, float] | None:
    """(step, value) of the last row of `curve` that has `column`; None if none does."""
    found = None
    with curve.open() as f:
        for row in csv.DictReader(f):
            if row.get(column) not in (None, ""):
                found = (int(float(row["step"])), float(row[column]))
    return found


def rank(folder: Path, model: str, column: str, higher: bool, prefix: str = "") -> list[tuple[str, int, float]]:
    """(run, step, value) of every run folder under `folder` whose name starts with `prefix`, best first."""
    runs = []
    for run in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix)):
        curve = run / "plots" / f"{model}_val.csv"
        value = last_value(curve, column) if curve.exists() else None
        if value is not None:
            runs.append((run.name, *value))
    return sorted(runs, key=lambda r: -r[2] if higher else r[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("model")
    parser.add_argument("column", help="a column of <model>_val.csv, e.g. elbo")
    parser.add_argument("--higher", action="store_true", help="higher is better (an ELBO); default lower")
    parser.add_argument("--group", action="append", default=[],
                        help="rank only runs whose folder starts with this, one table each (repeatable)")
    args = parser.parse_args(argv)
    for prefix in args.group or [""]:
        runs = rank(args.folder, args.model, args.column, args.higher, prefix)
        if not runs:
            print(f"no run under {args.folder} starting with {prefix!r} has {args.column}", file=sys.stderr)
            return 1
        print(f"\n{prefix or 'all'}*: validation {args.column} at the last evaluation, best first\n")
        print(f"| rank | run | step | val {args.column} |\n|---|---|---|---|")
        for i, (name, step, value) in enumerate(runs, 1):
            print(f"| {i} | `{name}/` | {step} | {value:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
