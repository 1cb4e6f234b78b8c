"""StackGAN's cpu recipe, chosen on validation: do stage II's images show the digit, colour and stroke they were
asked for?

For each recipe (overrides of the cpu profile's `stackgan` section), `genzoo train stackgan` at the cpu profile,
then the scores `evaluate` runs (the model's `extra_scores`) with the captions' validation split cut in two in the
place of its two splits: the attribute classifier that reads colour and stroke is fitted on the first half of the
validation digits (where `evaluate` uses all of them), and images are generated from the second half's captions
(where `evaluate` uses test captions; `score_rows` caps how many). The rule reads no test number (`genzoo train`
still writes its own end-of-run test pass and pictures into each run's folder, unread). The rule, fixed before the
first runs: the highest mean over the seeds of stage II's worst fidelity (the lowest of its digit, colour and
stroke accuracy: all three are gpu targets at >= 90 %), among recipes whose training took at most 1.25 times the
cpu profile's (the DAG's budget) and whose stage II is nearer the real digits than stage I (FD-evaluator) on
every seed (the paper's claim, a gpu target).

    python pipeline/stackgan_on_validation.py --data data/processed --derived data/derived --models models \
        --out OUT [--seed 0] [--recipe name:key=value,key=value ...]

`--models` must hold the trained evaluator (dvc repro train_evaluator). A GAN's short run is chaotic, so the rule
is read on two seeds, one process each (`--seed 0` and `--seed 1`, each `OMP_NUM_THREADS=1`, side by side):
3.5 min a recipe at the cpu profile's batch, 7 at batch 32. `--rank OUT` applies the rule to every seed's rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

RECIPES = [  # the cpu profile's, then one change at a time
    "cpu:",
    "aux_3:aux_weight=3.0",
    "batch_32:batch_size=32",
    "embed_lr_3e-3:embed_lr=0.003",
    "kl_0.02:kl_weight=0.02",
    "swap_0.25:swap_fraction=0.25",
]
TIME_BUDGET = 1.25  # a recipe's training time over the cpu profile's
FIDELITY = ("stage2_digit_accuracy", "stage2_colour_accuracy", "stage2_stroke_accuracy")


def validation_scores(model_file: Path, evaluator_file: Path, derived: Path, seed: int) -> dict[str, float]:
    """The model's `extra_scores` on validation alone: its classifier fitted on the first half, the second half's
    captions generated from and scored."""
    from compose import validation_halves

    from genzoo.models.registry import load_model

    model, evaluator = load_model(model_file), load_model(evaluator_file)
    split = validation_halves(derived, "captions")
    torch.manual_seed(seed)
    return model.extra_scores(split, evaluator)


def main(argv: list[str] | None = None) -> int:
    from compose import probe_parser

    args = probe_parser(__doc__).parse_args(argv)
    if args.rank:
        return rank(args.out)
    from compose import probe_recipes

    probe_recipes("stackgan", args.recipe or RECIPES, args.seed, args.out, args.data, args.derived,
                  args.models / "evaluator", lambda model, evaluator: validation_scores(
                      model, evaluator, args.derived, seed=args.seed))
    return 0


def rank(out: Path) -> int:
    """The rule on every seed's rows: the highest mean worst stage-II fidelity, within the time budget, with
    stage II nearer the real digits than stage I on every seed."""
    from compose import timed_seed_rows, write_ranking

    seeds, names, mean = timed_seed_rows(out)
    table = {name: {"worst_fidelity": mean(name, lambda s, _: min(s[k] for k in FIDELITY)),
                    **{key.split("_")[1]: mean(name, lambda s, _, key=key: s[key]) for key in FIDELITY},
                    "stage1_digit": mean(name, lambda s, _: s["stage1_digit_accuracy"]),
                    "fd_stage1": mean(name, lambda s, _: s["fd_stage1"]),
                    "fd_stage2": mean(name, lambda s, _: s["fd_stage2"]),
                    "stage2_nearer_every_seed": all(rows[name]["validation_scores"]["fd_stage2"]
                                                    < rows[name]["validation_scores"]["fd_stage1"]
                                                    for rows in seeds.values()),
                    "train_seconds": mean(name, lambda _, row: row["train_seconds"])} for name in names}
    budget = TIME_BUDGET * table["cpu"]["train_seconds"]
    eligible = [n for n in names if table[n]["train_seconds"] <= budget and table[n]["stage2_nearer_every_seed"]]
    chosen = max(eligible, key=lambda n: table[n]["worst_fidelity"]) if eligible else None
    print("| recipe | stage II worst fidelity (mean) | digit | colour | stroke | stage I digit | FD stage I | "
          "FD stage II | train s (mean) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        t = table[name]
        print(f"| {name} | {t['worst_fidelity']:.1%} | {t['digit']:.1%} | {t['colour']:.1%} | {t['stroke']:.1%} | "
              f"{t['stage1_digit']:.1%} | {t['fd_stage1']:.1f} | {t['fd_stage2']:.1f} | {t['train_seconds']:.0f} |")
    return write_ranking(
        out, seeds, table, chosen,
        rule=f"highest mean over seeds of min(stage II digit, colour, stroke accuracy), among recipes whose mean "
             f"training time is at most {TIME_BUDGET} x the cpu recipe's and whose fd_stage2 < fd_stage1 on "
             f"every seed",
        note="validation_scores are StackGAN.extra_scores with the captions' validation split cut in two: the "
             "attribute classifier fitted on its first half, images generated from the second half's captions "
             "(score_rows of them) and scored")


if __name__ == "__main__":
    raise SystemExit(main())
