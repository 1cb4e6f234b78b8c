"""Which numbers a fresh run reproduces: one metrics/ folder set beside another, number by number.

    python pipeline/reproduced.py FRESH COMMITTED [--out FILE]

FRESH is a run's metrics/ folder (`KEEP_METRICS=DIR bash pipeline/time_dag.sh cpu` keeps a fresh clone's),
COMMITTED the checkout's. Compared: every value of the JSON files and CSV tables both folders hold, except what
records when, where and how fast a run went (provenance, seconds, steps/s), and every picture, byte for byte.
A value is reproduced when it is equal, bit for bit; for the others the relative difference is reported, so a
reader sees whether a change is float rounding (another CPU's kernels) or a different model.
The gpu snapshots, the probes (committed side runs), the timings and the rendered report are left out: no cpu
run writes them or they hold times.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from pathlib import Path

SKIPPED_FOLDERS = ("gpu", "probes", "timing")
SKIPPED_FILES = ("report.html", "results.md")
SKIPPED_KEYS = ("provenance", "created", "scoring_key")  # scoring_key: which files a score came from, not a result
SKIPPED_WORDS = ("second", "steps_per_s")  # times and speeds, wherever they sit (`train/steps_per_s`)


def skipped(key: str) -> bool:
    return key in SKIPPED_KEYS or any(word in key for word in SKIPPED_WORDS)


def leaves(value, path: str = "") -> dict[str, object]:
    """A JSON value as {dotted path: scalar}, without the skipped keys."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() if not skipped(key)
                for k, v in leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def table(path: Path) -> dict[str, object]:
    """A CSV table as {row:column: cell}, numbers parsed, without the skipped columns."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = {}
    for i, row in enumerate(rows):
        for column, cell in row.items():
            if not skipped(column):
                try:
                    cells[f"{i}:{column}"] = float(cell)
                except (TypeError, ValueError):
                    cells[f"{i}:{column}"] = cell
    return cells


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same(a: object, b: object) -> bool:
    """Equal, bit for bit as floats go; two NaNs are the same result."""
    return a == b or (is_number(a) and is_number(b) and math.isnan(a) and math.isnan(b))


def relative_difference(a: object, b: object) -> float:
    """|a - b| / max(|a|, |b|) of two numbers that differ; infinite for a NaN, a string or a missing number."""
    if is_number(a) and is_number(b) and not (math.isnan(a) or math.isnan(b)):
        return abs(a - b) / max(abs(a), abs(b))  # not both zero: they differ
    return math.inf


def compare_values(fresh: dict, committed: dict) -> dict:
    shared = sorted(fresh.keys() & committed.keys())
    different = {k: (fresh[k], committed[k], relative_difference(fresh[k], committed[k]))
                 for k in shared if not same(fresh[k], committed[k])}
    worst = sorted(different.items(), key=lambda item: -item[1][2])
    return {"values": len(shared), "equal": len(shared) - len(different),
            "only_fresh": len(fresh.keys() - committed.keys()), "only_committed": len(committed.keys() - fresh.keys()),
            "max_relative_difference": finite(worst[0][1][2]) if worst else 0.0,
            "largest": [{"value": k, "fresh": f, "committed": c, "relative": finite(r)} for k, (f, c, r) in worst[:5]]}


def identical(file: dict) -> bool:
    """Every value equal, and none on one side only (a key or a table row added or lost)."""
    return file["values"] == file["equal"] and not (file["only_fresh"] or file["only_committed"])


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # None: not comparable as numbers (JSON has no infinity)


def commits(folder: Path) -> list[str]:
    """The commits the folder's JSON files name in their provenance: which code each side's numbers came from."""
    named = {json.loads(p.read_text()).get("provenance", {}).get("commit") for p in folder.glob("*.json")}
    return sorted(c for c in named if c)


def compared_files(folder: Path) -> set[str]:
    """The folder's files, as paths relative to it, without the skipped folders and files."""
    relative = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return {r.as_posix() for r in relative if r.parts[0] not in SKIPPED_FOLDERS and r.name not in SKIPPED_FILES}


def compare(fresh: Path, committed: Path) -> dict:
    """Every file of FRESH that COMMITTED also holds: its values (JSON, CSV) or its bytes (pictures)."""
    ours, theirs = compared_files(fresh), compared_files(committed)
    files, pictures = {}, {"equal": [], "different": []}
    for name in sorted(ours & theirs):
        path, other = fresh / name, committed / name
        if path.suffix == ".json":
            files[name] = compare_values(leaves(json.loads(path.read_text())), leaves(json.loads(other.read_text())))
        elif path.suffix == ".csv":
            files[name] = compare_values(table(path), table(other))
        elif path.suffix == ".png":
            pictures["equal" if path.read_bytes() == other.read_bytes() else "different"].append(name)
    values = sum(f["values"] for f in files.values())
    equal = sum(f["equal"] for f in files.values())
    return {"fresh": str(fresh), "committed": str(committed),
            "commits": {"fresh": commits(fresh), "committed": commits(committed)},
            "summary": {"files": len(files), "files_identical": sum(map(identical, files.values())),
                        "values": values, "values_equal": equal,
                        "pictures": len(pictures["equal"]) + len(pictures["different"]),
                        "pictures_identical": len(pictures["equal"])},
            "not_in_committed": sorted(ours - theirs), "not_in_fresh": sorted(theirs - ours),
            "pictures_different": pictures["different"], "files": files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fresh", type=Path)
    parser.add_argument("committed", type=Path)
    parser.add_argument("--out", type=Path, help="write the whole comparison here as JSON")
    args = parser.parse_args(argv)
    for folder in (args.fresh, args.committed):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    result = compare(args.fresh, args.committed)
    for name, f in result["files"].items():
        if f["equal"] < f["values"]:
            top = f["largest"][0]
            relative = top["relative"] if top["relative"] is not None else "n/a"
            print(f"{name}: {f['values'] - f['equal']} of {f['values']} values differ, largest relative {relative} "
                  f"({top['value']}: {top['fresh']!r} vs {top['committed']!r})")
        if f["only_fresh"] or f["only_committed"]:
            print(f"{name}: {f['only_fresh']} values only in the fresh run, "
                  f"{f['only_committed']} only in the committed")
    for name in result["pictures_different"]:
        print(f"{name}: picture differs")
    s = result["summary"]
    print(f"identical: {s['files_identical']} of {s['files']} files, {s['values_equal']} of {s['values']} values, "
          f"{s['pictures_identical']} of {s['pictures']} pictures; files only in the fresh run: "
          f"{len(result['not_in_committed'])}, only in the committed folder: {len(result['not_in_fresh'])}")
    if args.out:
        from genzoo.engine.tracking import record_provenance  # torch: only when a file is written

        command = shlex.join(["python", "pipeline/reproduced.py", *(sys.argv[1:] if argv is None else argv)])
        result = {"provenance": record_provenance("cpu", command), **result}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
