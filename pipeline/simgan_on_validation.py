"""SimGAN's cpu recipe, chosen on validation: does a refined synthetic digit keep its label and help a classifier?

For each recipe (overrides of the cpu profile's `simgan` section), `genzoo train simgan` at the cpu profile, then
the model's own scores (`extra_scores`, the code `evaluate` runs) with the validation split in the place of the
test split: the error on real validation digits of the fixed classifier trained on raw and on refined synthetic
training digits, and the frozen evaluator's accuracy on refined validation synthetic digits. The rule reads no
test number (`genzoo train` still writes its own end-of-run test pass and pictures into each run's folder,
unread). The rule, fixed before the runs: among the recipes whose refined validation digits the evaluator still
reads as their label at >= 95 % (the refiner keeps what the simulator knows), the lowest real-validation error of
the classifier trained on refined digits.

    python pipeline/simgan_on_validation.py --data data/processed --derived data/derived --models models \
        --out OUT [--seed 0] [--recipe name:key=value,key=value ...]

`--models` must hold the trained evaluator (dvc repro train_evaluator). A GAN's short run is chaotic, so the rule
is read on two seeds, one process each (`--seed 0` and `--seed 1`, each `OMP_NUM_THREADS=1` as a stage of the
two-at-a-time DAG runs, side by side): ~2 min a recipe. `--rank OUT` applies the rule to every seed's rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

RECIPES = [  # the cpu profile's, then one change at a time, then two together
    "cpu:",
    "lr_2e-4:lr=0.0002",
    "reg_10:reg_weight=10.0",
    "reg_3:reg_weight=3.0",
    "reg_10_lr_2e-4:reg_weight=10.0,lr=0.0002",
    "sgd:optimizer=sgd",
    "sgd_lr_1e-2:optimizer=sgd,lr=0.01",
]
LABEL_KEPT = 0.95  # the evaluator's accuracy on refined validation synthetic digits a recipe must keep


def validation_scores(model_file: Path, evaluator_file: Path, derived: Path, seed: int) -> dict[str, float]:
    """The model's `extra_scores` with validation standing in for test (the split it is told to score)."""
    from genzoo.data.derived import load_set
    from genzoo.models.registry import load_model

    model, evaluator = load_model(model_file), load_model(evaluator_file)
    own = {"train": load_set(derived, "synthetic", "train"), "test": load_set(derived, "synthetic", "val")}
    torch.manual_seed(seed)
    return model.extra_scores(own, evaluator)


def main(argv: list[str] | None = None) -> int:
    from compose import probe_parser

    parser = probe_parser(__doc__)
    args = parser.parse_args(argv)
    if args.rank:
        return rank(args.out)
    from compose import probe_recipes

    probe_recipes("simgan", args.recipe or RECIPES, args.seed, args.out, args.data, args.derived,
                  args.models / "evaluator", lambda model, evaluator: validation_scores(
                      model, evaluator, args.derived, seed=args.seed))
    return 0


def rank(out: Path) -> int:
    """The rule on every seed's rows: a recipe must keep the label on each seed; ranked by its mean error."""
    from compose import seed_rows, write_ranking

    seeds, names = seed_rows(out)
    table = {}
    for name in names:
        scores = [rows[name]["validation_scores"] for rows in seeds.values()]
        table[name] = {"label_kept": min(s["evaluator_accuracy_refined"] for s in scores),
                       "error_refined": sum(s["real_test_error_refined"] for s in scores) / len(scores),
                       "error_raw": sum(s["real_test_error_raw"] for s in scores) / len(scores)}
    kept = [n for n in names if table[n]["label_kept"] >= LABEL_KEPT]
    chosen = min(kept, key=lambda n: table[n]["error_refined"]) if kept else None
    print("| recipe | evaluator on refined val digits (worst seed) | real-val error, refined (mean) | raw (mean) |")
    print("|---|---|---|---|")
    for name in names:
        t = table[name]
        print(f"| {name} | {t['label_kept']:.1%} | {t['error_refined']:.1%} | {t['error_raw']:.1%} |")
    return write_ranking(
        out, seeds, table, chosen,
        rule=f"lowest mean real-validation error of the classifier trained on refined digits, among recipes "
             f"whose refined validation digits the evaluator reads as their label at >= {LABEL_KEPT:.0%} on "
             f"every seed",
        note="validation_scores are extra_scores with the validation split as its 'test': real_test_error_* "
             "is the error on real validation digits")


if __name__ == "__main__":
    raise SystemExit(main())
