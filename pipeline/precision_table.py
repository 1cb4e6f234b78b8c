"""Two whole-DAG runs that differ only in the engine's cpu precision, set side by side: each model's headline
numbers and its stage's wall time, fp32 beside bf16 autocast (issue 30: keep bf16 only where it is faster and the
model trains to the same quality).

    TIMING_NAME=cpu_bf16_dag KEEP_METRICS=DIR bash pipeline/time_dag.sh cpu engine.cpu_precision=bf16
    python pipeline/precision_table.py DIR metrics [--out FILE]      # bf16 run (DIR) beside the committed fp32 one

Each run's timing file is its metrics/timing/ (`cpu_dag.json` for fp32, the TIMING_NAME one for bf16). The
headline numbers are the ones the report's summary reads (classes hit and FD-evaluator for samplers, the test NLL
for likelihood models, each conditional model's own accuracy), printed as they are: a single run of each
precision, so a difference is the precision's plus the change of trajectory that any change of numerics brings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# model -> (file, dotted key, which way is better) for the numbers shown; samplers also get classes_hit and fd
HEADLINES = {
    "evaluator": [("evaluator.json", "test.accuracy", ">")],
    "autoencoder": [("evaluate.json", "models.autoencoder.codes_accuracy", ">")],
    "cvae": [("evaluate.json", "models.cvae.label_agreement", ">")],
    "pix2pix": [("evaluate.json", "models.pix2pix.accuracy", ">")],
    "pix2pix_l1": [("evaluate.json", "models.pix2pix_l1.accuracy", ">")],
    "enhancenet": [("evaluate.json", "models.enhancenet.fd", "<")],
    "enhancenet_mse": [("evaluate.json", "models.enhancenet_mse.psnr", ">")],
    "cyclegan": [("evaluate.json", "models.cyclegan.accuracy_ab", ">")],
    "stargan": [("evaluate.json", "models.stargan.single_reached_min", ">")],
    "simgan": [("evaluate.json", "models.simgan.error_reduction", ">")],
    "sketchrnn": [("evaluate.json", "models.sketchrnn.reconstruction_accuracy", ">")],
    "stackgan": [("evaluate.json", "models.stackgan.stage2_digit_accuracy", ">")],
    "anogan": [("anogan.json", "mean_auroc.anogan", ">")],
    "triplegan": [("triplegan.json", "triplegan.mean", "<")],
}
SAMPLER_KEYS = [("classes_hit", ">"), ("fd", "<")]
STAGE = {"evaluator": "train_evaluator", "anogan": "anogan", "triplegan": "triplegan"}  # else train@ or
TRANSLATION = "train_translation@{}"  # a translation model's stage


def value(folder: Path, file: str, key: str) -> float | None:
    path = folder / file
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return float(data) if isinstance(data, (int, float)) else None


def rows(bf16: Path, fp32: Path) -> list[tuple[str, str, str, float | None, float | None]]:
    """(model, metric, better, fp32 value, bf16 value) for every model either run scored."""
    models = json.loads((fp32 / "evaluate.json").read_text())["models"]
    out = []
    for name in ["evaluator", *models, "anogan", "triplegan"]:
        keys = list(HEADLINES.get(name, []))
        if name in models and "classes_hit" in models[name]:
            keys = [("evaluate.json", f"models.{name}.{k}", better) for k, better in SAMPLER_KEYS] + keys
        if name in models and "test_nll" in models[name]:
            keys.append(("evaluate.json", f"models.{name}.test_nll", "<"))
        for file, key, better in keys:
            out.append((name, key.rsplit(".", 1)[-1], better, value(fp32, file, key), value(bf16, file, key)))
    return out


def stage_seconds(timing: Path) -> dict[str, float]:
    return json.loads(timing.read_text())["stages"] if timing.exists() else {}


def table(bf16: Path, fp32: Path, bf16_timing: Path, fp32_timing: Path) -> list[str]:
    slow, fast = stage_seconds(fp32_timing), stage_seconds(bf16_timing)
    lines = ["| model | number | fp32 | bf16 | stage s, fp32 | stage s, bf16 | fp32 / bf16 time |",
             "|---|---|---|---|---|---|---|"]
    shown = set()
    for name, metric, better, a, b in rows(bf16, fp32):
        stage = STAGE.get(name, f"train@{name}")
        if stage not in slow:
            stage = TRANSLATION.format(name)
        times = ["", "", ""]
        if name not in shown and stage in slow and stage in fast:
            times = [f"{slow[stage]:.0f}", f"{fast[stage]:.0f}", f"{slow[stage] / fast[stage]:.2f}×"]
        shown.add(name)
        cells = ["—" if v is None else f"{v:.4g}" for v in (a, b)]
        lines.append(f"| {name} | {metric} ({'higher' if better == '>' else 'lower'} is better) | {cells[0]} | "
                     f"{cells[1]} | {' | '.join(times)} |")
    total_a, total_b = (json.loads(t.read_text())["total_seconds"] if t.exists() else None
                        for t in (fp32_timing, bf16_timing))
    if total_a and total_b:
        lines += ["", f"Whole DAG: fp32 {total_a:.0f} s, bf16 {total_b:.0f} s ({total_a / total_b:.2f}×)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bf16", type=Path, help="the bf16 run's metrics/ folder (KEEP_METRICS)")
    parser.add_argument("fp32", type=Path, help="the fp32 run's metrics/ folder (the committed one)")
    parser.add_argument("--bf16-timing", type=Path, default=Path("metrics/timing/cpu_bf16_dag.json"))
    parser.add_argument("--fp32-timing", type=Path, default=Path("metrics/timing/cpu_dag.json"))
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    for folder in (args.bf16, args.fp32):
        if not (folder / "evaluate.json").exists():
            sys.exit(f"{folder}: no evaluate.json (a whole run's metrics/ folder is expected)")
    text = "\n".join(table(args.bf16, args.fp32, args.bf16_timing, args.fp32_timing)) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
