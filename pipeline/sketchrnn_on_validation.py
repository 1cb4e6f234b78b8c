"""Sketch-RNN's cpu recipe, chosen on validation: are its reconstructions read as the digit that was drawn?

For each recipe (overrides of the cpu profile's `sketchrnn` section), `genzoo train sketchrnn` at the cpu profile,
then the scores `evaluate` runs (the model's `extra_scores`) with the strokes set's validation split in the place
of its test split, every validation sketch scored (`score_rows` 0): the frozen evaluator's accuracy on greedy
reconstructions (z = mu) rasterized, beside its accuracy on the rasterized originals. The rule reads no test
number (`genzoo train` still writes its own end-of-run test pass and pictures into each run's folder, unread).

The rule, fixed before the first run: the highest mean over the seeds of the reconstructions' accuracy, among
recipes whose training took at most 1.25 times the cpu profile's (the DAG's budget), each seed's time read against
the `cpu` run interpolated to `cpu_again`, the same recipe run again last (`compose.time_ratios`). The KL terms
(`w_kl`, `kl_min`, `eta_*`) are the paper's balance between reconstruction and the prior's samples: a rule that
reads reconstructions alone would weaken them, so no recipe here changes them.

    python pipeline/sketchrnn_on_validation.py --data data/processed --derived data/derived --models models \
        --out OUT [--seed 0] [--recipe name:key=value,key=value ...]

`--models` must hold the trained evaluator and `data/strokes` the stroke set (dvc repro strokes train_evaluator).
The rule is read on two seeds, one process each (`--seed 0` and `--seed 1`, each `OMP_NUM_THREADS=1`, side by
side): 3 min a recipe as measured (3 to 4.3 on a slower hour). `--rank OUT` applies the rule to every seed's rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

RECIPES = [  # the cpu profile's, then one change at a time, then the cpu profile's again (the time reference)
    "cpu:",
    "lr_2e-3:lr=0.002",
    "lr_3e-3:lr=0.003",
    "cosine:lr_schedule=cosine",
    "clip_norm:clip_mode=norm",
    "no_scale_aug:random_scale=0.0",
    "mixtures_20:mixtures=20",
    "enc_128:enc_hidden=128",
    "latent_64:latent_dim=64",
    "cpu_again:",
]
TIME_BUDGET = 1.25  # a recipe's training time over the cpu profile's


def validation_scores(model_file: Path, evaluator_file: Path, derived: Path, seed: int) -> dict[str, float]:
    """The model's `extra_scores` with the strokes' validation split as its test split, every sketch scored."""
    from genzoo.data.derived import load_set
    from genzoo.models.registry import load_model

    model, evaluator = load_model(model_file), load_model(evaluator_file)
    model.config.score_rows = 0  # all of validation: a smaller error bar than the profile's 1,000 rows
    torch.manual_seed(seed)
    return model.extra_scores({"test": load_set(derived, "strokes", "val")}, evaluator)


def main(argv: list[str] | None = None) -> int:
    from compose import probe_parser

    args = probe_parser(__doc__).parse_args(argv)
    if args.rank:
        return rank(args.out)
    from compose import probe_recipes

    probe_recipes("sketchrnn", args.recipe or RECIPES, args.seed, args.out, args.data, args.derived,
                  args.models / "evaluator", lambda model, evaluator: validation_scores(
                      model, evaluator, args.derived, seed=args.seed))
    return 0


def rank(out: Path) -> int:
    """The rule on every seed's rows: the highest mean reconstruction accuracy within the time budget."""
    from compose import time_ratios, timed_seed_rows, write_ranking

    seeds, names, mean = timed_seed_rows(out)
    ratios = {seed: time_ratios(rows) for seed, rows in seeds.items()}
    table = {name: {"reconstruction_accuracy": mean(name, lambda s, _: s["reconstruction_accuracy"]),
                    "original_accuracy": mean(name, lambda s, _: s["original_accuracy"]),
                    "val_l_r": mean(name, lambda s, _: s["test_l_r"]),
                    "val_l_kl": mean(name, lambda s, _: s["test_l_kl"]),
                    "train_seconds": mean(name, lambda _, row: row["train_seconds"]),
                    "time_ratio": sum(r[name] for r in ratios.values()) / len(ratios)} for name in names}
    eligible = [n for n in names if table[n]["time_ratio"] <= TIME_BUDGET]
    chosen = max(eligible, key=lambda n: table[n]["reconstruction_accuracy"]) if eligible else None
    print("| recipe | reconstructions read right (mean) | originals | val L_R | val L_KL | train s (mean) | "
          "time / cpu's |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        t = table[name]
        print(f"| {name} | {t['reconstruction_accuracy']:.1%} | {t['original_accuracy']:.1%} | {t['val_l_r']:.4f} | "
              f"{t['val_l_kl']:.3f} | {t['train_seconds']:.0f} | {t['time_ratio']:.2f} |")
    return write_ranking(
        out, seeds, table, chosen,
        rule=f"highest mean over seeds of the evaluator's accuracy on greedy reconstructions of the validation "
             f"sketches, among recipes whose mean training time is at most {TIME_BUDGET} x the cpu recipe's (each "
             f"seed's cpu time interpolated by start time between its `cpu` and `cpu_again` runs)",
        note="validation_scores are Sketch-RNN.extra_scores with the strokes' validation split as its test split, "
             "every sketch scored (score_rows 0): test_* keys are validation losses")


if __name__ == "__main__":
    raise SystemExit(main())
