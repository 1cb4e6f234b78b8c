"""Rewrite params.yaml from pipeline/conf with DVC's own Hydra composition (the same code `dvc exp run -S` runs).

    python pipeline/compose.py                 # the default (cpu) profile: what main commits
    python pipeline/compose.py profile=gpu     # any Hydra overrides
    python pipeline/compose.py --out .gpu/gpu.yaml profile=gpu   # elsewhere, params.yaml untouched
"""

import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]


def compose(output: Path, overrides: list[str]) -> None:
    compose_and_dump(output, str(ROOT / "pipeline" / "conf"), None, "config", str(ROOT), overrides)


if __name__ == "__main__":
    args, output = sys.argv[1:], ROOT / "params.yaml"
    if args[:1] == ["--out"]:
        if len(args) < 2:
            sys.exit("--out needs a file")
        output, args = Path(args[1]), args[2:]
        output.parent.mkdir(parents=True, exist_ok=True)
    compose(output, args)
    print(f"wrote {output}" + (f" with {' '.join(args)}" if args else ""))
