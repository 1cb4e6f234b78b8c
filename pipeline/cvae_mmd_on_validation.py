"""The CVAE's `label_mmd_weight` chosen again, reading no test image (issue 31 item 3).

For each weight, `genzoo train cvae` at the cpu profile (its validation ELBO curve is the cost), then the
frozen evaluator's agreement with the asked label on 10 x 1000 conditional samples drawn from the prior
(samples: no data of any split). The rule, fixed before the runs: the smallest weight whose agreement reaches
the 95 % of src/genzoo/targets.yaml's CVAE target; its validation ELBO is what that costs.

    python pipeline/cvae_mmd_on_validation.py --data data/processed --models models --out OUT [--weights 0,100,200,300]

`--models` must hold the trained evaluator (dvc repro train_evaluator). One seed (run.seed); about 2 min per
weight on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))


def agreement(model_file: Path, evaluator_file: Path) -> float:
    from genzoo.models.registry import load_model

    torch.manual_seed(0)
    return load_model(model_file).label_agreement(load_model(evaluator_file))["label_agreement"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", default="0,100,200,300")
    args = parser.parse_args(argv)
    from compose import side_run

    from genzoo.engine.io import write_json
    from genzoo.engine.tracking import command_line, record_provenance

    rows = {}
    for weight in [float(w) for w in args.weights.split(",")]:
        run = args.out / f"mmd_{weight:g}"
        summary = side_run("cvae", run, [f"cvae.label_mmd_weight={weight}"], args.data, args.models / "evaluator")
        models = run / "models"
        rows[f"{weight:g}"] = {"val": {k: v for k, v in summary["final"].items() if k.startswith("val/")},
                               "label_agreement": agreement(models / "cvae" / "model.pt",
                                                            models / "evaluator" / "model.pt")}
        print(f"label_mmd_weight {weight:g}: {rows[f'{weight:g}']}", flush=True)
    reaching = [w for w, r in rows.items() if r["label_agreement"] >= 0.95]
    chosen = min(reaching, key=float) if reaching else None
    write_json(args.out / "ranking.json", {"rows": rows, "rule": "smallest weight with label agreement >= 95 %",
                                           "chosen": chosen, "provenance": record_provenance("cpu", command_line())})
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
