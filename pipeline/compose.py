"""Rewrite params.yaml from pipeline/conf with DVC's own Hydra composition (the same code `dvc exp run -S` runs).

    python pipeline/compose.py                 # the default (cpu) profile: what main commits
    python pipeline/compose.py profile=gpu     # any Hydra overrides
"""

import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

ROOT = Path(__file__).resolve().parents[1]


def compose(output: Path, overrides: list[str]) -> None:
    compose_and_dump(output, str(ROOT / "pipeline" / "conf"), None, "config", str(ROOT), overrides)


if __name__ == "__main__":
    compose(ROOT / "params.yaml", sys.argv[1:])
    print(f"wrote {ROOT / 'params.yaml'}" + (f" with {' '.join(sys.argv[1:])}" if sys.argv[1:] else ""))
