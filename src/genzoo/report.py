"""The `report` stage: one page of results rendered from `metrics/` alone (never from a model or a guess).

It writes `metrics/results.md` (also spliced into README.md between the results markers) and
`metrics/report.html` with the pictures. Each table names its profile, hardware, commit, protocol and the command
that repeats it. `metrics/gpu/` holds the committed snapshot of the last gpu-profile run (see pipeline/gpu.sh).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from genzoo.io import read_json, write_text
from genzoo.models import GENERATIVE
from genzoo.params import Params

START, END = "<!-- genzoo:results:start -->", "<!-- genzoo:results:end -->"
COMMANDS = {"cpu": "make run", "gpu": "make gpu", "tiny": "dvc exp run -S profile=tiny"}

# The published numbers to put beside ours, per model and measurement.
EVALUATOR_TARGET = "≥ 99.3 % test accuracy (DESIGN.md §4)"
ANCHORS = {
    "cvae": {"nll": "—"},
    "vae": {"nll": "86.76 (VAE, k=1 training; Burda et al. 2016, Table 1)"},
    "gan": {"parzen": "225 ± 2 (Goodfellow et al. 2014, Table 1)"},
    "aae": {"parzen": "340 ± 2 (Makhzani et al. 2015, Table 1)"},
    "pixelcnn": {"nll": "81.30 (van den Oord et al. 2016, Table 4)"},
    "pixelrnn": {"nll": "80.54 Row LSTM (van den Oord et al. 2016)"},
    "pixelrnn_diagonal": {"nll": "79.20 Diagonal BiLSTM, 7 layers, h = 16 (van den Oord et al. 2016)"},
    "flow_vae": {"nll": "K=10/20/40/80: 87.5/86.5/85.7/85.1 (Rezende & Mohamed 2015, Table 2)"},
    "flow_vae_deep": {"nll": "K=10/20/40/80: 87.5/86.5/85.7/85.1 (Rezende & Mohamed 2015, Table 2)"},
}


# The issues' gpu-profile targets: (model, what, measured value from evaluate.json's scores, met?).
# On the cpu profile the same rows show how far a minute of CPU training gets.
TARGETS = [
    ("autoencoder", "codes beat raw pixels with 100 labels", lambda s: s.get("codes_accuracy"),
     lambda v, models: v > models["autoencoder"]["pixels_accuracy"]),
    ("cvae", "evaluator agrees with the asked label ≥ 95 %", lambda s: s.get("label_agreement"),
     lambda v, _: v >= 0.95),
    ("vae", "test NLL ≤ 86.0 nats", lambda s: s.get("test_nll"), lambda v, _: v <= 86.0),
    ("gan", "Parzen LL ≥ 240 nats", lambda s: s.get("parzen_ll"), lambda v, _: v >= 240),
    ("aae", "Parzen LL ≥ 340 nats", lambda s: s.get("parzen_ll"), lambda v, _: v >= 340),
    ("flow_vae", "test NLL ≤ 85.0 nats", lambda s: s.get("test_nll"), lambda v, _: v <= 85.0),
    ("flow_vae_deep", "test NLL ≤ 85.0 nats", lambda s: s.get("test_nll"), lambda v, _: v <= 85.0),
    ("pixelcnn", "test NLL ≤ 81.0 nats", lambda s: s.get("test_nll"), lambda v, _: v <= 81.0),
    ("pixelrnn", "test NLL ≤ 80.5 nats (Row LSTM)", lambda s: s.get("test_nll"), lambda v, _: v <= 80.5),
    ("dcgan", "all 10 classes hit", lambda s: s.get("classes_hit"), lambda v, _: v == 10),
    ("dcgan", "FD-evaluator below the VAE's", lambda s: s.get("fd"),
     lambda v, models: "vae" in models and v < models["vae"]["fd"]),
    ("pix2pix", "evaluator accuracy on translated test edges ≥ 98 %", lambda s: s.get("accuracy"),
     lambda v, _: v >= 0.98),
    ("enhancenet_mse", "MSE training beats bicubic on PSNR (dB)", lambda s: s.get("psnr"),
     lambda v, models: v > models["enhancenet_mse"]["bicubic_psnr"]),
    ("enhancenet", "perceptual beats MSE on FD-evaluator", lambda s: s.get("fd"),
     lambda v, models: "enhancenet_mse" in models and v < models["enhancenet_mse"]["fd"]),
    ("enhancenet", "perceptual beats MSE on evaluator accuracy", lambda s: s.get("accuracy"),
     lambda v, models: "enhancenet_mse" in models and v > models["enhancenet_mse"]["accuracy"]),
    ("pix2pix", "cGAN + L1 vs the L1-only ablation: lower FD-evaluator", lambda s: s.get("fd"),
     lambda v, models: "pix2pix_l1" in models and v < models["pix2pix_l1"]["fd"]),
    ("cyclegan", "label preserved on G(thin test) ≥ 97 %", lambda s: s.get("accuracy_ab"), lambda v, _: v >= 0.97),
    ("stargan", "target attribute reached ≥ 95 % (worst single target)", lambda s: s.get("single_reached_min"),
     lambda v, _: v >= 0.95),
    ("stargan", "digit kept ≥ 95 % (worst single target)", lambda s: s.get("single_digit_min"), lambda v, _: v >= 0.95),
    ("stargan", "colour and stroke both reached ≥ 95 % (worst unlabelled combination)",
     lambda s: s.get("combo_reached_min"), lambda v, _: v >= 0.95),
    ("simgan", "real-test error of a classifier on refined vs raw synthetic digits: ≥ 30 % lower",
     lambda s: s.get("error_reduction"), lambda v, _: v >= 0.30),
    *[("stackgan", f"caption fidelity of stage II: {what} ≥ 90 %", lambda s, k=key: s.get(k), lambda v, _: v >= 0.90)
      for what, key in (("digit", "stage2_digit_accuracy"), ("colour", "stage2_colour_accuracy"),
                        ("stroke", "stage2_stroke_accuracy"))],
    ("stackgan", "stage II's FD-evaluator below stage I's (upsampled)", lambda s: s.get("fd_stage2"),
     lambda v, models: v < models["stackgan"]["fd_stage1"]),
    ("sketchrnn", "rasterized reconstructions read as the right digit within 5 points of the originals",
     lambda s: s.get("reconstruction_accuracy"), lambda v, models: v >= models["sketchrnn"]["original_accuracy"] - 0.05),
]

# What the translation papers claim, shown beside our scores (their data sets are not ours: claims, not anchors).
PAPER_CLAIMS = {
    "pix2pix": "Isola et al. 2017: cGAN + L1 gives sharper, more realistic outputs than L1 alone (lower PSNR-style "
               "scores are expected, better FCN / AMT realism)",
    "enhancenet": "Sajjadi et al. 2017: perceptual + texture + adversarial losses give sharper texture at a lower PSNR "
                  "than MSE; here the perceptual network is our frozen MNIST evaluator (ImageNet VGG weights cannot "
                  "be downloaded here)",
    "cyclegan": "Zhu et al. 2017: cycle consistency keeps the content through unpaired translation",
    "stargan": "Choi et al. 2018: one generator reaches every target of two partly labelled sets, including "
               "combinations no single set labels (mask vector)",
    "simgan": "Shrivastava et al. 2017: training on refined synthetic eyes cut the real gaze error 11.2° → 7.8° (−30 %)",
    "sketchrnn": "Ha & Eck 2018: an RNN VAE of pen strokes reconstructs, interpolates and completes sketches; its "
                 "Table 1 trades L_R against L_KL through w_KL on QuickDraw classes (not our MNIST strokes, and "
                 "L_R divides by each set's N_max: compare within a set only)",
    "stackgan": "Zhang et al. 2017: stage II, given stage I's image and the text again, corrects defects and adds "
                "detail (CUB / Oxford-102 / COCO at 64 → 256 px, Inception score); here 14 → 28 px, captions from "
                "the coloured digits' attributes, scored by the evaluator and the attribute classifiers; both "
                "profiles add TAC-GAN's attribute classifier to D (`aux_weight`, 0 = the paper's)",
}


# Targets of the stages with files of their own: (file, what, measured value, met?).
STAGE_TARGETS = [
    ("anogan.json", "AnoGAN mean AUROC ≥ 0.95", lambda s: s["mean_auroc"]["anogan"], lambda v: v >= 0.95),
    ("triplegan.json", "Triple-GAN mean test error ≤ 1.0 %", lambda s: 100 * s["triplegan"]["mean"],
     lambda v: v <= 1.0),
]


SUITE_KEYS = {"fd", "kid", "kid_std", "precision", "recall", "classes_hit", "kl_to_uniform", "histogram", "parzen_ll",
              "parzen_stderr", "parzen_sigma", "test_elbo", "test_nll", "test_nll_stderr", "test_k",
              "test_bits_per_dim", "test_images", "nll_kind"}


def _model_scores(evaluate: dict) -> list[str]:
    """The model-specific scores (`extra_scores`): few-label accuracies, conditional agreement and NLL, ..."""
    rows = []
    for name, s in evaluate["models"].items():
        own_fd = "histogram" not in s  # a translation model's FD is against its truth, not in the sample table
        extra = {k: v for k, v in s.items() if (k not in SUITE_KEYS or (own_fd and k == "fd"))
                 and not k.startswith("parzen")
                 and not re.search(r"_(reached|digit)$", k)}  # StarGAN's per-target rates: evaluate.json
        if extra:
            rows.append(f"| {name} | " + ", ".join(f"{k} = {_fmt(v, 4)}" for k, v in extra.items()) + " |")
    claims = [f"- **{name}**: {claim}" for name, claim in PAPER_CLAIMS.items() if name in evaluate["models"]]
    claims = ["The translation papers' claims, for the rows above:", "", *claims, ""] if claims else []
    return (["| model | its own scores |", "|---|---|", *rows, ""] + claims) if rows else []


def _targets(evaluate: dict, folder: Path) -> list[str]:
    models = evaluate["models"]
    rows = []
    for file, what, measure, met in STAGE_TARGETS:
        if (folder / file).exists():
            value = measure(read_json(folder / file))
            rows.append(f"| {file.removesuffix('.json')} | {what} | {_fmt(value, 3)} | {'met' if met(value) else 'not met'} |")
    for name, what, measure, met in TARGETS:
        value = measure(models[name]) if name in models else None
        if value is None:
            continue
        rows.append(f"| {name} | {what} | {_measured(value)} | {'met' if met(value, models) else 'not met'} |")
    return ["| model | target (gpu profile) | measured here | |", "|---|---|---|---|", *rows, ""] if rows else []


def _measured(value) -> str:
    return _fmt(value, 4 if isinstance(value, float) and abs(value) < 1 else 2)  # a rate: 0.9985, not 1.00


def _gpu_overview(runs: list[tuple[str, Path]]) -> list[str]:
    """Each gpu-profile target once, scored by the most recent gpu run that has its model (by evaluation time:
    the latest recipe, never the best of several runs), with that run's epochs; the sections below hold each run
    in full. A target that no gpu run has scored yet says so."""
    scored, machines = [], {}
    for label, folder in runs:
        evaluate, run_file = read_json(folder / "evaluate.json"), folder / "run.json"
        scored.append((evaluate["provenance"].get("created", ""), label, folder, evaluate["models"],
                       read_json(run_file).get("models", {}) if run_file.exists() else {}))
        machines[folder] = evaluate["provenance"].get("device")  # one process trains and scores

    def where(created: str, label: str, folder: Path, budgeted: dict, name: str) -> str:
        machine = machines[folder]
        if "epochs" in budgeted.get(name, {}):
            epochs = f", {budgeted[name]['epochs']} of {budgeted[name]['profile_epochs']} epochs"
            if budgeted[name].get("runs"):  # trained over several runs, maybe on several machines: its section says
                epochs += f" in {len(budgeted[name]['runs'])} runs"
                machine = None
        elif (folder / f"{name}.json").exists():
            epochs = f", {read_json(folder / f'{name}.json')['epochs']} epochs"
        else:
            epochs = ""
        # the gpu profile's params on whatever ran them: a cpu run of a small model says so
        return f"{label} ({created[:10]}{epochs}{f', on {machine}' if machine else ''})"

    rows = []
    for file, what, measure, met in STAGE_TARGETS:
        have = [r for r in scored if (r[2] / file).exists()]
        name = file.removesuffix(".json")
        if not have:
            rows.append(f"| {name} | {what} | pending | | no gpu run yet |")
            continue
        created, label, folder, _, _ = max(have, key=lambda r: r[0])
        value = measure(read_json(folder / file))
        rows.append(f"| {name} | {what} | {_fmt(value, 3)} | {'met' if met(value) else 'not met'} | "  # as _targets
                    f"{label} ({created[:10]}) |")
    for name, what, measure, met in TARGETS:
        have = [r for r in scored if name in r[3] and measure(r[3][name]) is not None]
        if not have:
            rows.append(f"| {name} | {what} | pending | | no gpu run yet |")
            continue
        created, label, folder, models, budgeted = max(have, key=lambda r: r[0])
        value = measure(models[name])
        rows.append(f"| {name} | {what} | {_measured(value)} | {'met' if met(value, models) else 'not met'} | "
                    f"{where(created, label, folder, budgeted, name)} |")
    return ["### GPU targets, each by its latest gpu run", "",
            "| model | target (gpu profile) | measured | | run (evaluated, epochs of the profile's) |",
            "|---|---|---|---|---|", *rows, "",
            "A gpu run is a run of the gpu profile's params, on the machine named. The profile's epochs are those "
            "of its recipe when the run was made (a later recipe may differ); each run's section below links the "
            "params it used.", ""]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _nll_images(evaluate: dict) -> str:
    counts = sorted({s["test_images"] for s in evaluate["models"].values() if "test_images" in s})
    return " / ".join(map(str, counts)) or "no"


def _protocol(evaluate: dict) -> list[str]:
    protocol = evaluate["protocol"]
    lines = ["Protocol: " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in protocol.items() if k != "nll") + "."]
    if any("test_nll" in s for s in evaluate["models"].values()):
        lines.append(f"Test NLL: the IWAE bound (an upper bound on the true NLL; k in the table; 'exact' for the "
                     f"autoregressive models, always on all test images) on "
                     f"{_nll_images(evaluate)} test images of the fixed seeded binarization.")
    return lines


def _sample_table(evaluate: dict) -> list[str]:
    """The metric suite: every sampling model beside the real-data floor (blank where a run predates a metric)."""
    lines = ["| samples of | FD-evaluator ↓ | KID ×1000 ↓ | precision ↑ | recall ↑ | Parzen LL (nats) ↑ | "
             "classes hit | KL to uniform ↓ | paper (Parzen) |", "|---|---|---|---|---|---|---|---|---|"]
    rows = {**{k: s for k, s in evaluate["models"].items() if "histogram" in s},
            "real training digits (floor)": evaluate["real_test"]}
    for name, s in rows.items():
        kid = f"{s['kid'] * 1000:.2f} ± {s['kid_std'] * 1000:.2f}" if "kid" in s else "—"
        parzen = f"{s['parzen_ll']:.1f} ± {s['parzen_stderr']:.1f} (σ={s['parzen_sigma']:.3g})" \
            if "parzen_ll" in s else "—"
        anchor = ANCHORS.get(name, {}).get("parzen", "—")
        lines.append(f"| {name} | {_fmt(s.get('fd'))} | {kid} | {_fmt(s.get('precision'), 3)} | "
                     f"{_fmt(s.get('recall'), 3)} | {parzen} | {s['classes_hit']}/{len(s['histogram'])} | "
                     f"{s['kl_to_uniform']:.4f} | {anchor} |")
    return lines


def _likelihood_table(evaluate: dict, folder: Path, budgeted: dict) -> list[str]:
    """`budgeted`: run.json's models (gpu_models.py); one trained over several runs gets its time on each machine."""
    lines = ["| likelihood of | test NLL (nats) ↓ | bits/dim | test ELBO | train time | paper (NLL) |",
             "|---|---|---|---|---|---|"]
    for name, s in evaluate["models"].items():
        if "test_nll" not in s:
            continue
        train = read_json(folder / f"{name}.json")
        how = "exact" if s.get("nll_kind") == "exact" else f"k={s['test_k']}"
        runs = budgeted.get(name, {}).get("runs")
        took = (" + ".join(f"{seconds:.0f} s on {hardware}" for hardware, seconds in _seconds_by_hardware(runs))
                + ", runs with their starts" if runs else f"{train['train_seconds']:.0f} s")
        lines.append(f"| {name} | {s['test_nll']:.2f} ± {s['test_nll_stderr']:.2f} ({how}) | "
                     f"{s['test_bits_per_dim']:.4f} | {_fmt(s.get('test_elbo'))} | "
                     f"{took} ({train['epochs']} epochs) | "
                     f"{ANCHORS.get(name, {}).get('nll', '—')} |")
    return lines if len(lines) > 2 else []


def _seconds_by_hardware(runs: list[dict]) -> list[tuple[str, float]]:
    """The seconds a ledger's runs spent on each machine, in the order the machines first ran."""
    seconds: dict[str, float] = {}
    for run in runs:
        seconds[run["hardware"]] = seconds.get(run["hardware"], 0.0) + run["seconds"]
    return list(seconds.items())


def _saturation(folder: Path) -> list[str]:
    file = folder / "gan_saturation.json"
    if not file.exists():
        return []
    s = read_json(file)
    early = s["early_grad_norm_g"]
    return [f"Generator loss saturation ({s['model']}, same initial weights, data and noise; "
            f"`metrics/plots/gan_saturation.csv`): mean ‖∇G‖ over the first {s['early_window']} steps "
            f"**{early['non_saturating']:.3g}** with −log D(G(z)) vs **{early['minimax']:.3g}** with "
            f"log(1 − D(G(z))) (ratio {s['ratio_non_saturating_to_minimax']:.1f}); D(G(z)) after {s['steps']} steps: "
            f"{s['final_d_fake']['non_saturating']:.3f} vs {s['final_d_fake']['minimax']:.3f}.", ""]


def _anogan(folder: Path) -> list[str]:
    """AUROC per normal class (one-vs-rest) for AnoGAN and its two baselines, beside the published means."""
    file = folder / "anogan.json"
    if not file.exists():
        return []
    s = read_json(file)
    methods = list(s["mean_auroc"])
    classes = [str(c) for c in s["classes"]]
    lines = ["Anomaly detection (`genzoo anogan`, one-vs-rest, AUROC; " + s["protocol"] + ")", "",
             "| normal class | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    lines += [f"| {c} | " + " | ".join(f"{s['auroc'][m][c]:.3f}" for m in methods) + " |" for c in classes]
    lines.append(f"| **mean over {len(classes)}** | " + " | ".join(f"**{s['mean_auroc'][m]:.3f}**" for m in methods)
                 + " |")
    secs = s["seconds"]
    lines += ["", "Published means over the ten classes: " + "; ".join(f"{k} {v:.3f}" for k, v in
                                                                       s["anchors_mean_auroc"].items())
              + f". Batched inversion of {secs['images']} test images × {s['inversion_steps']} steps: "
              f"{secs['inversion_mean']:.1f} s per class on {secs['device']}"
              + (f"; one image at a time it would take {secs['single_extrapolated_s']:.0f} s "
                 f"(×{secs['speedup']:.1f}, timed on {secs['single_images']} images)" if "speedup" in secs else "")
              + ".", ""]
    return lines


def _triplegan(folder: Path) -> list[str]:
    """C's test error with the shared few labels, Triple-GAN against the same C trained on the labels alone."""
    file = folder / "triplegan.json"
    if not file.exists():
        return []
    s = read_json(file)

    def cell(entry: dict) -> str:
        return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f} % " + \
            "(" + ", ".join(f"{100 * e:.2f}" for e in entry["test_error"]) + ")"

    return [f"Semi-supervised classification (`genzoo triplegan`, {s['labelled']} labels, seeds {s['seeds']}, "
            f"{s['steps']} steps per seed):", "",
            "| classifier | test error, mean ± std (per seed) | paper |", "|---|---|---|",
            f"| Triple-GAN's C | {cell(s['triplegan'])} | 0.91 ± 0.58 % (Li et al. 2017, Table 1) |",
            f"| the same C on the labels alone | {cell(s['baseline'])} | Improved-GAN 0.93 % (Salimans et al. 2016) |",
            "", f"Baseline: {s['baseline_note']}.", ""]


# The seeds' GAN-vs-VAE table (what the tutorial claims), shown beside what `genzoo compare` measures.
SEED_CLAIMS = {"vae": "smooth, blurry; a likelihood; local minimum",
               "gan": "sharp, artefacts; no likelihood; saddle points, mode collapse",
               "dcgan": "sharp, artefacts; no likelihood; saddle points, mode collapse",
               "ebgan": "a GAN whose D is an autoencoder: sharp, steadier training claimed"}


def _compare(folder: Path) -> list[str]:
    """The seeds' GAN-vs-VAE table with our numbers: mean ± std over training seeds (`genzoo compare`)."""
    file = folder / "compare.json"
    if not file.exists():
        return []
    s = read_json(file)

    def cell(agg: dict, key: str, digits: int = 2) -> str:
        v = agg.get(key)
        if not v:
            return "—"
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}" if v["n"] > 1 else f"{v['mean']:.{digits}f}"

    def span(agg: dict, key: str) -> str:
        v = agg.get(key)
        return "—" if not v else (f"{v['min']:.0f}–{v['max']:.0f}" if v["min"] != v["max"] else f"{v['min']:.0f}")

    real = s["real_test"]
    lines = [f"GAN vs VAE, measured (`genzoo compare`, training seeds {s['seeds']}, mean ± std over seeds; "
             f"real test digits' grey share {real['grey_share']:.3f}):", "",
             "| model | the seed's claim | FD-evaluator | grey ratio (blur; real = 1) | Parzen LL | test NLL | "
             "classes hit (seeds missing one) | precision / recall | memorization: median ratio pixels / features "
             "(near-copies) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in s["models"]:
        a = s["aggregates"][name]
        lines.append(f"| {name} | {SEED_CLAIMS.get(name, '')} | {cell(a, 'fd')} | {cell(a, 'grey_ratio')} | "
                     f"{cell(a, 'parzen_ll', 1)} | {cell(a, 'test_nll')} | {span(a, 'classes_hit')} "
                     f"({a['seeds_missing_a_class']}) | {cell(a, 'precision')} / {cell(a, 'recall')} | "
                     f"{cell(a, 'mem_pixel_ratio')} / {cell(a, 'mem_feature_ratio')} "
                     f"({cell(a, 'mem_pixel_near_copies', 3)}) |")
    measured = {n: s["aggregates"][n] for n in s["models"]}
    sharpest = min(measured, key=lambda n: measured[n]["fd"]["mean"])
    crispest = min(measured, key=lambda n: abs(measured[n]["grey_ratio"]["mean"] - 1))
    steadiest = min(measured, key=lambda n: measured[n]["fd"]["std"])
    lines += ["", f"Lowest FD-evaluator: **{sharpest}**; grey share closest to real digits: **{crispest}**; "
              f"smallest spread of FD over seeds: **{steadiest}**. A memorization ratio below 1 would mean samples "
              "sit closer to the training digits than unseen test digits do (near-copies: share of samples closer "
              "than the test digits' 1 % quantile). Protocol: " + s["protocol"]["memorization"] + ".", ""]
    return lines


def _toy(folder: Path) -> list[str]:
    """The GAN paper's theory, measured on a 1-D mixture (`genzoo toy`)."""
    file = folder / "gan_toy.json"
    if not file.exists():
        return []
    s = read_json(file)
    init, final, early = s["initial"], s["final"], s["early_grad_norm_g"]
    at_start = early["at_initial_g_trained_d"]
    lines = [f"GAN theory on a 1-D mixture (`genzoo toy`, {s['steps']} steps, `metrics/figures/gan_toy/`): "
             f"JSD(p_data ‖ p_g) {init['jsd']:.3f} → **{final['jsd']:.4f}**; C(G) = −log 4 + 2·JSD "
             f"{init['c_g']:.3f} → **{final['c_g']:.4f}** against −log 4 = {s['minus_log4']:.4f}."]
    for name, check in s["max_d"].items():
        lines[-1] += (f" At the {name} G, D trained alone reaches V within {check['gap_d_trained']:.2g} of C(G) "
                      f"(D* by the formula: {check['gap_d_star']:.2g}; the GAN's own D: {check['gap_d_gan']:.2g}).")
    if isinstance(at_start, dict):
        lines[-1] += (" Saturation at the initial G against a converged D: ‖∇G‖ " + ", ".join(
            f"{k.replace('_', '-')} {v:.3g}" for k, v in at_start.items()) + ".")
    return lines + [""]


def _runs(runs: list[dict]) -> str:
    """Where each step of a model trained over several runs ran (gpu_models.py's ledger): the hardware may differ."""
    return f"in {len(runs)} runs: " + ", ".join(
        f"steps {r['from_step']}–{r['to_step']} on {r['hardware']} in {r['seconds']:.0f} s "
        f"({(r['to_step'] - r['from_step']) / max(r['seconds'], 1e-9):.1f} steps/s with its start)" for r in runs)


def _budget(run: dict) -> list[str]:
    """A part of the gpu profile run within a time budget (pipeline/gpu_models.py): the epochs it could afford."""
    if "budget_seconds" not in run:
        return []
    done = {name: m for name, m in run["models"].items() if "paused_at" not in m}
    trained = "; ".join(f"{name} {m['epochs']} of {m['profile_epochs']} (" + (_runs(m["runs"]) if m.get("runs") else
                        f"{m['steps_per_s']:g} steps/s, trained {m['train_seconds']:.0f} s" +
                        (f", resumed at step {m['resumed_from']}" if m.get("resumed_from") else "")) + ")"
                        for name, m in done.items())
    if run.get("checkpoints"):  # --checkpoints: full epochs, paused between runs (train time counts every part)
        line = (f"Trained at the gpu profile's params, epochs and all, in budgeted runs (this one: "
                f"{run['budget_seconds']:g} s), a model unfinished in its share paused at a checkpoint and "
                f"resumed by the next run (epochs of the profile's): {trained or 'none finished'}.")
        paused = {name: m for name, m in run["models"].items() if "paused_at" in m}
        if paused:
            line += " Paused, to go on: " + "; ".join(f"{name} at step {m['paused_at']} of {m['total_steps']}"
                                                     for name, m in paused.items()) + "."
    else:
        line = (f"Trained within a {run['budget_seconds']:g} s budget, the gpu profile's params except the epochs, "
                f"each model's capped to its share at the steps/s measured first (epochs run of the profile's): "
                f"{trained}.")
    if run.get("bench_only"):
        line += " Timed only, for a later lease: " + "; ".join(
            f"{name} {b['steps_per_s']:g} steps/s ({b['seconds_per_epoch']:g} s/epoch)"
            for name, b in run["bench_only"].items()) + "."
    if run.get("failed"):
        line += " Failed: " + "; ".join(f"{name}: {why}" for name, why in run["failed"].items()) + "."
    return [line, ""]


def profile_section(folder: Path, title: str, link_prefix: str) -> list[str]:
    """Markdown for one profile's run, read from `folder` (metrics/ or metrics/gpu/)."""
    evaluate = read_json(folder / "evaluate.json")
    evaluator = read_json(folder / "evaluator.json")
    prov = evaluate["provenance"]
    run_file = folder / "run.json"
    run_info = read_json(run_file) if run_file.exists() else {}
    command = run_info.get("command", COMMANDS.get(prov["profile"], "dvc repro"))
    commit = prov["commit"]
    if run_info.get("source_commit"):  # the device's copy of .git was not the tree's commit: run.json says why
        commit, dirty = run_info["source_commit"], " (the tree the device ran; run.json's source_note says why)"
    elif prov.get("dvc_experiment"):  # its params are the experiment's: the params.yaml and dvc.lock kept beside it
        dirty = f" + experiment `{prov['dvc_experiment']}`"
    else:
        dirty = " (uncommitted changes)" if prov.get("dirty") else ""
    lines = [f"### {title}", "",
             f"Profile `{prov['profile']}` · hardware: {prov['device']} · commit `{commit[:10]}`{dirty} · "
             f"data `{prov['dataset']}` (hash `{prov['data_hash'][:12]}`) · command: `{command}`"
             + (f" · its params and lock: `{link_prefix}params.yaml`, `{link_prefix}dvc.lock`"
                if (folder / "dvc.lock").exists() else
                f" · its params: `{link_prefix}params.yaml`" if (folder / "params.yaml").exists() else ""), "",
             *_protocol(evaluate), ""]
    lines += _budget(run_info)
    lines += _sample_table(evaluate) + [""] + _likelihood_table(evaluate, folder, run_info.get("models", {}))
    lines += [""] + _model_scores(evaluate)
    lines += _anogan(folder) + _triplegan(folder) + _targets(evaluate, folder)
    accuracy = evaluator["test"]["accuracy"] * 100
    lines += ["", f"Evaluator (frozen CNN behind every metric): test accuracy **{accuracy:.2f} %** after "
              f"{evaluator['epochs']} epochs ({evaluator['train_seconds']:.0f} s); "
              f"target {EVALUATOR_TARGET}.", ""]
    lines += _compare(folder) + _saturation(folder) + _toy(folder)
    bench_file = folder / "bench.json"
    if bench_file.exists():
        lines += ["`genzoo bench` (training loop, data on the device; eager = the same loop without CUDA graphs):",
                  "", "| benchmark | device | CUDA graphs | batch | steps/s | s/epoch | s per 60k images |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} training | {r['device']} | {'yes' if r.get('cuda_graphs') else 'no (eager)'} | "
                  f"{r['batch_size']} | {r['steps_per_s']} | {r['seconds_per_epoch']} | "
                  f"{_fmt(r.get('seconds_per_60k_images'), 3)} |"
                  for r in read_json(bench_file)["results"]]
        lines.append("")
    for name in ["derived", "strokes", *evaluate["models"], "comparisons", "compare", "anogan", "triplegan",
                 "gan_toy"]:
        pictures = sorted((folder / "figures" / name).glob("*.png"))
        if pictures:
            lines.append(" ".join(f"![{name} {p.stem}]({link_prefix}figures/{name}/{p.name})" for p in pictures))
            lines.append("")
    return lines


def render(metrics: Path) -> str:
    lines = []
    if (metrics / "evaluate.json").exists():
        lines += profile_section(metrics, "Default pipeline (the last `dvc repro` of this checkout)",
                                 f"{metrics.as_posix()}/")
    gpu = metrics / "gpu"
    parts = sorted(p for p in gpu.iterdir() if (p / "evaluate.json").exists()) if gpu.is_dir() else []
    runs = [("`make gpu` snapshot", gpu)] if (gpu / "evaluate.json").exists() else []
    runs += [(f"part `{part.name}`", part) for part in parts]
    if runs:
        lines += _gpu_overview(runs)
    if (gpu / "evaluate.json").exists():
        lines += profile_section(gpu, "GPU profile (snapshot of the last `make gpu`)", f"{gpu.as_posix()}/")
    else:
        lines += ["### GPU profile", "", "Pending: no gpu-profile run is committed yet (`make gpu` on a GPU "
                  "machine writes `metrics/gpu/`).", ""]
    for part in parts:  # pipeline/gpu_models.py: some models of the gpu profile, within a lease's minutes
        lines += profile_section(part, f"GPU profile, part `{part.name}` (pipeline/gpu_models.py)",
                                 f"{part.as_posix()}/")
    return "\n".join(lines).rstrip() + "\n"


def to_html(markdown: str, metrics: Path) -> str:
    """A small, dependency-free rendering of the results markdown (headings, tables, images, paragraphs)."""
    body, table = [], []

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: f'<img alt="{m[1]}" src="{_relative(m[2], metrics)}">',
                      text)
        text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{inline(c)}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
            body.append(f"<table><tr>{head}</tr>{rest}</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("### "):
            body.append(f"<h2>{inline(line[4:])}</h2>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}img{margin:4px;image-rendering:pixelated;width:300px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>genzoo results</title><style>{style}</style>"
            f"</head><body><h1>genzoo results</h1>{''.join(body)}</body></html>\n")


def _relative(src: str, metrics: Path) -> str:
    """README links are relative to the repository root; the HTML page lives in metrics/."""
    prefix = f"{metrics.as_posix()}/"
    return src[len(prefix):] if src.startswith(prefix) else src


def splice_readme(readme: Path, section: str) -> bool:
    """Replace the README's results section in place; False (and no change) when the markers are missing."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    write_text(readme, f"{before}{START}\n{section}{END}{after}")
    return True


def report_stage(params: Params, metrics: Path, readme: Path) -> str:
    missing = [n for n in GENERATIVE if not (metrics / f"{n}.json").exists()]
    if missing:
        print(f"warning: no metrics yet for {', '.join(missing)}")
    section = render(metrics)
    write_text(metrics / "results.md", section)
    write_text(metrics / "report.html", to_html(section, metrics))
    if not splice_readme(readme, section):
        print(f"warning: {readme} has no {START} ... {END} markers; left unchanged")
    print(f"wrote {metrics / 'results.md'} and {metrics / 'report.html'}")
    return section
