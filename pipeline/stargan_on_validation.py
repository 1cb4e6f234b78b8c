"""StarGAN's cpu recipe, chosen on validation: does a translation reach its target and keep its digit?

For each recipe (overrides of the cpu profile's `stargan` section, the same 600 steps of 16), `genzoo train
stargan` at the cpu profile, then the scores `evaluate` runs (`score_translations`) with the validation split
cut in two in the place of its two splits: the attribute classifier that judges colour and stroke is fitted on
the first half of the validation digits (where `evaluate` uses all of them), and the translations of the first
`--images` digits of the second half to every target are scored (where `evaluate` uses test digits). The rule
reads no test number (`genzoo train` still writes its own end-of-run test pass and pictures into each run's
folder, unread). The rule, fixed before the first runs: the highest mean over the seeds of the worst single target,
the lower of "target reached" and "digit kept" over the six single-attribute targets (both are gpu targets at
>= 95 %), among recipes whose training took at most 1.25 times the cpu profile's (the DAG's budget).

    python pipeline/stargan_on_validation.py --data data/processed --derived data/derived --models models \
        --out OUT [--seed 0] [--images 1000] [--recipe name:key=value,key=value ...]

`--models` must hold the trained evaluator (dvc repro train_evaluator). A GAN's short run is chaotic, so the rule
is read on two seeds, one process each (`--seed 0` and `--seed 1`, each `OMP_NUM_THREADS=1`, side by side):
~2.5 min a recipe. `--rank OUT` applies the rule to every seed's rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

RECIPES = [  # the cpu profile's, then one change at a time, then two together
    "cpu:",
    "lr_5e-4:lr=0.0005",
    "lr_1e-3:lr=0.001",
    "rec_20:lambda_rec=20.0",
    "cls_3:lambda_cls=3.0",
    "lr_5e-4_cls_3:lr=0.0005,lambda_cls=3.0",
]
TIME_BUDGET = 1.25  # a recipe's training time over the cpu profile's
SINGLES = ("single_reached_min", "single_digit_min")


def validation_scores(model_file: Path, evaluator_file: Path, derived: Path, images: int,
                      seed: int) -> dict[str, float]:
    """`score_translations` on validation alone: its classifier fitted on the first half, the second half scored."""
    from compose import validation_halves

    from genzoo.metrics.attributes import score_translations
    from genzoo.models.registry import load_model

    model, evaluator = load_model(model_file), load_model(evaluator_file)
    split = validation_halves(derived, "multidomain")
    torch.manual_seed(seed)
    return score_translations(model, split, evaluator, images, seed=seed,
                              classifier_steps=model.config.attribute_steps)


def main(argv: list[str] | None = None) -> int:
    from compose import probe_parser

    parser = probe_parser(__doc__)
    parser.add_argument("--images", type=int, default=1000, help="second-half validation digits translated")
    args = parser.parse_args(argv)
    if args.rank:
        return rank(args.out)
    from compose import probe_recipes

    probe_recipes("stargan", args.recipe or RECIPES, args.seed, args.out, args.data, args.derived,
                  args.models / "evaluator", lambda model, evaluator: validation_scores(
                      model, evaluator, args.derived, args.images, seed=args.seed))
    return 0


def rank(out: Path) -> int:
    """The rule on every seed's rows: the highest mean worst single target, within the time budget."""
    from compose import timed_seed_rows, write_ranking

    seeds, names, mean = timed_seed_rows(out)
    table = {name: {"worst_single": mean(name, lambda s, _: min(s[k] for k in SINGLES)),
                    "reached": mean(name, lambda s, _: s["single_reached_min"]),
                    "digit": mean(name, lambda s, _: s["single_digit_min"]),
                    "combo_reached": mean(name, lambda s, _: s["combo_reached_min"]),
                    "train_seconds": mean(name, lambda _, row: row["train_seconds"])} for name in names}
    budget = TIME_BUDGET * table["cpu"]["train_seconds"]
    eligible = [n for n in names if table[n]["train_seconds"] <= budget]
    chosen = max(eligible, key=lambda n: table[n]["worst_single"]) if eligible else None
    print("| recipe | worst single target (mean) | reached, worst single (mean) | digit kept, worst single (mean) "
          "| reached, worst combination (mean) | train s (mean) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        t = table[name]
        print(f"| {name} | {t['worst_single']:.1%} | {t['reached']:.1%} | {t['digit']:.1%} | "
              f"{t['combo_reached']:.1%} | {t['train_seconds']:.0f} |")
    return write_ranking(
        out, seeds, table, chosen,
        rule=f"highest mean over seeds of min(single_reached_min, single_digit_min), among recipes whose mean "
             f"training time is at most {TIME_BUDGET} x the cpu recipe's",
        note="validation_scores are score_translations with the validation split cut in two: the attribute "
             "classifier fitted on its first half, the second half's digits translated and scored")


if __name__ == "__main__":
    raise SystemExit(main())
