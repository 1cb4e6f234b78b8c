"""The `report` stage: renders the files in `metrics/` beside the anchors and targets in `src/genzoo/targets.yaml`.
It measures nothing and holds no number of its own; a verdict compares a measured value with a declared threshold,
and only on the target's whole protocol (the coverage each run records) and, for a paper's number, only for a run
of the paper's recipe (`Target.judge`). A winner among models over training seeds is named only where a test over
the seeds separates it (genzoo.metrics.significance).

Three views of the same files: README.md's summary between the markers (a row per model: its paper number, its
latest gpu number, its cpu number, the verdict; then a gallery, one picture per model), `docs/results.md` (every
table of the default run and of each gpu run in `metrics/gpu/`) and `metrics/report.html` (docs/results.md through
markdown-it-py, pictures linked beside it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

from genzoo.data.naming import DIGIT_CLASSES, Naming
from genzoo.engine.io import read_json, write_text
from genzoo.metrics.significance import ALPHA, separate, welch
from genzoo.models.registry import GENERATIVE, GENERATIVE_MODULES, module_file
from genzoo.params import Params
from genzoo.targets import OURS, PAPER_RECIPE, PENDING, Anchor, Target, Targets, Verdict, load_targets, measure

START, END = "<!-- genzoo:results:start -->", "<!-- genzoo:results:end -->"
COMMANDS = {"cpu": "make run", "gpu": "make gpu", "tiny": "dvc exp run -S profile=tiny"}
# The gallery's picture of a model: the first of these it has, else its first picture by name.
GALLERY = ("samples", "samples_by_class", "translations", "superresolution", "a_to_b", "targets", "stages",
           "refined", "class_conditional", "class_0", "reconstructions")
GALLERY_COLUMNS, GALLERY_WIDTH = 6, 120
# How the zoo's models binarize their training digits unless a run's evaluate.json entry records otherwise
# (`train_binarization`): afresh at every step (DESIGN.md §4; genzoo.models.blocks.binarize).
TRAIN_BINARIZATION = "dynamic"
# Control recipes (pipeline/conf/recipes.yaml): the model with one part switched off, trained and scored alike so
# the part's own effect shows: a planar-flow VAE with K = 0 and everything else of our recipe or of the paper's.
FLOWLESS = "flowless"
PAPER_FLOWLESS = "paper_flowless"
CONTROLS = (FLOWLESS, PAPER_FLOWLESS)
FLOW_FILE = "src/genzoo/models/flow_vae.py"  # the planar-flow VAEs (flow_vae, flow_vae_deep)


# ---------------------------------------------------------------------------------------------------------------
# Runs: the default pipeline's (metrics/) and each gpu run's (metrics/gpu/, metrics/gpu/<part>/).

@dataclass
class Run:
    label: str
    folder: Path
    profile: str
    created: str
    device: str | None
    budgeted: dict  # run.json's models (pipeline/gpu_models.py): epochs run of the profile's, the runs of each
    files: dict = field(default_factory=dict)

    def read(self, file: str) -> dict | None:
        if file not in self.files:
            path = self.folder / file
            self.files[file] = read_json(path) if path.exists() else None
        return self.files[file]

    def value(self, entry: Anchor | Target) -> float | None:
        return measure(entry, self.read(entry.file))

    def recipe(self, entry: Anchor | Target) -> str:
        """The recipe that made `entry`'s number here, as the run records it (`recipe` in its evaluate.json model
        entry or run.json's, or at the top of a stage's own file); a run that records none is ours."""
        data = self.read(entry.file) or {}
        if entry.file == "evaluate.json":
            name = _model_of(entry)
            recorded = ((data.get("models", {}).get(name) or {}).get("recipe")
                        or self.budgeted.get(name, {}).get("recipe"))
        else:
            recorded = data.get("recipe")
        return recorded if isinstance(recorded, str) and recorded else OURS

    def coverage(self, entry: Anchor | Target) -> dict:
        """What this run recorded it covered of `entry`'s protocol (the fields of targets.Coverage); a field it
        does not record is left out, and a target that needs it says so."""
        data = self.read(entry.file) or {}
        dataset = (data.get("provenance") or {}).get("dataset")
        on = {"dataset": dataset} if isinstance(dataset, str) else {}  # a file from before it was recorded: MNIST
        if entry.file != "evaluate.json":  # a stage's own file (anogan.json, triplegan.json): counted at its top
            covered = {k: len(data[k]) for k in ("classes", "seeds") if isinstance(data.get(k), list)}
            return on | covered | {k: data[k] for k in ("test_images", "inversion_steps")
                                   if isinstance(data.get(k), int)}
        scores = data.get("models", {}).get(_model_of(entry)) or {}
        metric = entry.key.rsplit(".", 1)[-1]
        covered = {}
        if metric.startswith("test_"):  # the NLL: its k (none for an exact one) and its test images
            covered = {"test_images": scores.get("test_images"),
                       "binarization": scores.get("train_binarization", TRAIN_BINARIZATION)}
            if scores.get("nll_kind") != "exact":
                covered["k"] = scores.get("test_k")
        elif metric.startswith("parzen"):  # the Parzen window: its samples and test images, from the protocol
            text = data.get("protocol", {}).get("parzen", "")
            samples, test = re.search(r"on (\d+) samples", text), re.search(r"of (\d+) test ", text)
            covered = {"samples": int(samples[1]) if samples else None, "test_images": int(test[1]) if test else None}
        return on | {k: v for k, v in covered.items() if v is not None}

    def judge(self, target: Target) -> Verdict | None:
        """The verdict on this run's value of `target` (None where it has none): Target.judge on its coverage and
        recipe."""
        value = self.value(target)
        if value is None:
            return None
        return target.judge(value, self.read(target.file), self.coverage(target), self.recipe(target))

    def where(self, entry: Anchor | Target) -> str:
        """The run, when it was evaluated, and the epochs it trained `entry`'s model of the profile's."""
        if entry.file != "evaluate.json":
            return f"{self.label} ({self.created[:10]})"
        name, machine, budgeted = entry.model, self.device, self.budgeted
        if "epochs" in budgeted.get(name, {}):
            epochs = f", {budgeted[name]['epochs']} of {budgeted[name]['profile_epochs']} epochs"
            if budgeted[name].get("runs"):  # trained over several runs, maybe on several machines: its section says
                epochs += f" in {len(budgeted[name]['runs'])} runs"
                machine = None
        elif (self.folder / f"{name}.json").exists():
            epochs = f", {read_json(self.folder / f'{name}.json')['epochs']} epochs"
        else:
            epochs = ""
        # the gpu profile's params on whatever ran them: a cpu run of a small model says so
        return f"{self.label} ({self.created[:10]}{epochs}{f', on {machine}' if machine else ''})"


def open_run(label: str, folder: Path) -> Run:
    prov = read_json(folder / "evaluate.json")["provenance"]
    run_file = folder / "run.json"
    return Run(label, folder, prov["profile"], prov.get("created", ""), prov.get("device"),  # one process trains
               read_json(run_file).get("models", {}) if run_file.exists() else {})  # and scores


def gpu_runs(metrics: Path) -> list[Run]:
    """The `make gpu` snapshot (metrics/gpu/) and each part run by pipeline/gpu_models.py (metrics/gpu/<part>/)."""
    gpu = metrics / "gpu"
    parts = sorted(p for p in gpu.iterdir() if (p / "evaluate.json").exists()) if gpu.is_dir() else []
    runs = [open_run("`make gpu` snapshot", gpu)] if (gpu / "evaluate.json").exists() else []
    return runs + [open_run(f"part `{part.name}`", part) for part in parts]


def latest(runs: list[Run], entry: Anchor | Target, paper: bool | None = None, recipe: str | None = None
           ) -> tuple[Run, float] | None:
    """The most recently evaluated run that measured `entry` (the latest recipe, never the best of several); with
    `paper`, only runs of the paper's recipe (True) or of another (False). A control recipe (CONTROLS: a model
    with a part switched off) never stands for the model; `recipe` asks for the runs of that one recipe only."""
    have = [(run, value) for run in runs if (value := run.value(entry)) is not None
            and (paper is None or (run.recipe(entry) == PAPER_RECIPE) == paper)
            and (run.recipe(entry) == recipe if recipe else run.recipe(entry) not in CONTROLS)]
    return max(have, key=lambda rv: rv[0].created) if have else None


def _model_of(entry: Anchor | Target) -> str:
    """The model an evaluate.json key measures (`models.<name>.<metric>`)."""
    return entry.key.split(".")[1] if entry.key.startswith("models.") else entry.model


def show(entry: Anchor | Target, value: float) -> str:
    """A measured value as its table shows it: a fraction in % as percent, a rate to 4 digits."""
    return f"{value:.2f}" if entry.unit == "%" else _measured(value)


def _link(path: Path, base: Path) -> str:
    """A picture's link from the page in `base` (README at the root, docs/, or metrics/ for the HTML)."""
    return Path(os.path.relpath(path, base)).as_posix()


# ---------------------------------------------------------------------------------------------------------------
# The data set a run measured, in words (genzoo.data.naming), and the models that made no sense on it.

def data_names(evaluate: dict) -> Naming:
    """The data set and classes of an evaluate.json: its "data" entry (written for any data set but the digits),
    else the digits 0-9 (MNIST, and every file written before data sets were named)."""
    if "data" in evaluate:
        return Naming(evaluate["data"]["dataset"], tuple(evaluate["data"]["classes"]))
    return Naming(evaluate.get("provenance", {}).get("dataset", "mnist"), DIGIT_CLASSES)


def not_applicable(evaluate: dict | None, model: str) -> str | None:
    """Why `model` was not trained on this run's data set (its train stage refused it), or None."""
    return ((evaluate or {}).get("models", {}).get(model) or {}).get("not_applicable")


# ---------------------------------------------------------------------------------------------------------------
# The summary (README and docs/results.md) and the gallery (README).

WORDS = ("met", "not met", "partial", "off protocol", "not the paper's recipe", "pending")


def _verdict(verdicts: list[Verdict]) -> str:
    words = [v.word for v in verdicts]
    if len(set(words)) == 1:
        return words[0]
    return ", ".join(f"{words.count(w)} {w}" for w in WORDS if w in words)


def _latest_verdict(runs: list[Run], target: Target) -> Verdict:
    """A target's verdict by its latest gpu run: for a paper's number, the latest run of the paper's recipe."""
    found = latest(runs, target, paper=True if target.paper_number else None)
    return PENDING if found is None else found[0].judge(target)


def _recipe_cell(found: tuple[Run, float], entry: Anchor | Target) -> str:
    """`ours: 84.56 (not the paper's recipe: ...; partial: ...)`: the number, the recipe that made it, and what
    keeps it from a verdict."""
    run, value = found
    text = f"{run.recipe(entry)}: {show(entry, value)}"
    verdict = run.judge(entry) if isinstance(entry, Target) else None
    notes = [f"not the paper's recipe: {entry.ours_differs}"] if verdict and verdict.recipe else []
    if verdict and verdict.recipe:  # a binarization off the paper's is the recipe's, said just before
        notes += [Verdict("partial", verdict.partial).text()] if verdict.partial else []
    elif verdict and verdict.coverage_note():
        notes.append(verdict.coverage_note())
    return text + (f" ({'; '.join(notes)})" if notes else "")


def summary(metrics: Path, runs: list[Run], t: Targets) -> list[str]:
    """A row per model: its first target (or its paper's measure), the paper's number, the latest gpu run's value,
    the default run's value, and the verdict of the latest gpu runs on all its targets."""
    default = open_run("default", metrics) if (metrics / "evaluate.json").exists() else None
    profile = default.profile if default else "cpu"
    lines = [f"| model | measure | paper's number | paper's recipe (gpu) | our recipe (latest gpu run) | {profile} "
             f"(`{COMMANDS.get(profile, 'dvc repro')}`, smoke size) | verdict (gpu runs) |",
             "|---|---|---|---|---|---|---|"]
    without = []
    for model in ("evaluator", *GENERATIVE, "anogan", "triplegan"):
        targets = [x for x in t.targets if x.model == model]
        anchors = [a for a in t.anchors if a.model == model]
        if not targets and not anchors:
            without.append(model)
            continue
        head = targets[0] if targets else anchors[0]
        paper = next((a.value_text() + f" ({a.paper})" for a in anchors if (a.file, a.key) == (head.file, head.key)),
                     "—")
        against_paper = isinstance(head, Target) and head.paper_number
        theirs = latest(runs, head, paper=True) if against_paper else None
        ours = latest(runs, head, paper=False)
        paper_cell = ("pending" if theirs is None else _recipe_cell(theirs, head)) if against_paper else "—"
        here = default.value(head) if default else None
        verdicts = {whose: [_latest_verdict(runs, x) for x in targets if x.paper_number == (whose == "paper's")]
                    for whose in ("paper's", "ours")}
        verdict = "; ".join(f"{whose}: {_verdict(v)}" for whose, v in verdicts.items() if v) or "—"
        what = head.text() if isinstance(head, Target) else f"{head.what} ({head.unit})"
        if here is None and default and not_applicable(default.read("evaluate.json"), model):
            here_cell = "not applicable"  # its train stage refused the default run's data set
        elif here is None:
            here_cell = "—"
        else:
            note = default.judge(head).coverage_note() if isinstance(head, Target) else ""
            here_cell = show(head, here) + (f" ({note})" if note else "")
        lines.append(f"| {model} | {what} | {paper} | {paper_cell} | "
                     f"{'pending' if ours is None else _recipe_cell(ours, head)} | {here_cell} | {verdict} |")
    lines += ["", "Each row shows the model's first target in `src/genzoo/targets.yaml` and the verdicts of the latest "
              "gpu runs on all its targets. A paper's number is judged (met / not met) only on a run of the paper's "
              "recipe that covered the paper's whole protocol; the paper's recipe column says pending until one is "
              "run. Our recipe's number stands beside it, with how that recipe differs, and is not judged against "
              "the paper's number. A target marked (ours) is our own threshold, judged on the latest gpu run of "
              "any recipe. A run that covered less of a target's protocol (classes, test images, samples, seeds, "
              "k, inversion steps, binarization) says partial and what it covered, never met or not met. The "
              f"{profile} column is the default smoke-size run, held to no target."
              + (f" No paper number or target: {', '.join(without)}." if without else ""), ""]
    return lines


def _picture(folder: Path, name: str) -> Path | None:
    figures = folder / "figures" / name
    for stem in GALLERY:
        if (figures / f"{stem}.png").exists():
            return figures / f"{stem}.png"
    pictures = sorted(figures.glob("*.png"))
    return pictures[0] if pictures else None


def gallery(metrics: Path, runs: list[Run], base: Path) -> list[str]:
    """One picture per model, from its latest gpu run that has one, else from the default run."""
    default = open_run("default", metrics).profile if (metrics / "evaluate.json").exists() else "cpu"
    cells = []
    for name in (*GENERATIVE, "anogan", "triplegan"):
        gpu = [run for run in runs if _picture(run.folder, name)]
        newest = max(gpu, key=lambda r: r.created) if gpu else None
        folder, profile = (newest.folder, newest.profile) if newest else (metrics, default)
        picture = _picture(folder, name)
        if picture:
            cells.append(f'<img src="{_link(picture, base)}" width="{GALLERY_WIDTH}" alt="{name} {picture.stem}">'
                         f"<br>{name} · {profile}")
    if not cells:
        return []
    cells += [""] * (-len(cells) % GALLERY_COLUMNS)
    rows = [cells[i:i + GALLERY_COLUMNS] for i in range(0, len(cells), GALLERY_COLUMNS)]
    return ["One picture per model, from its latest gpu run where one has pictures, else from the default run:", "",
            "| " + " | ".join([" "] * GALLERY_COLUMNS) + " |", "|" + "---|" * GALLERY_COLUMNS,
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def readme_block(metrics: Path, base: Path, t: Targets | None = None) -> str:
    """What goes between the README's markers: the summary, a link to the full results, the gallery."""
    t = t or load_targets()
    runs = gpu_runs(metrics)
    results = _link(base / "docs" / "results.md", base)
    lines = [*summary(metrics, runs, t),
             f"Every table, protocol, gpu run and picture: [{results}]({results}) (also `metrics/report.html`).", "",
             *gallery(metrics, runs, base)]
    return "\n".join(lines).rstrip() + "\n"


def targets_table(t: Targets) -> list[str]:
    """The targets and anchors as declared, with the protocol each assumes."""
    lines = ["## Targets and paper anchors", "",
             "As declared in `src/genzoo/targets.yaml`: a target is met or not from the measured value alone; an anchor "
             "is a paper's number, shown beside ours where the same measure is.", "",
             "| model | target | paper | protocol it assumes | profiles |", "|---|---|---|---|---|"]
    lines += [f"| {x.model} | {x.text()} | {x.paper}{', ' + x.table if x.table else ''} | {x.protocol} | "
              f"{', '.join(x.profiles)} |" for x in t.targets]
    lines += ["", "| model | paper's number | measure | protocol it assumes | profiles |", "|---|---|---|---|---|"]
    lines += [f"| {a.model} | {a.text()} | {a.what} | {a.protocol} | {', '.join(a.profiles)} |" for a in t.anchors]
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------------
# One run's section of docs/results.md.

SUITE_KEYS = {"fd", "kid", "kid_std", "precision", "recall", "classes_hit", "kl_to_uniform", "histogram", "parzen_ll",
              "parzen_stderr", "parzen_sigma", "test_elbo", "test_nll", "test_nll_stderr", "test_k",
              "test_bits_per_dim", "test_images", "nll_kind"}


def _anchors(t: Targets, file: str, key: str) -> str:
    """The papers' numbers for one measured cell, or — where none is declared."""
    return "; ".join(a.text() for a in t.anchors if (a.file, a.key) == (file, key)) or "—"


def _model_scores(evaluate: dict, t: Targets) -> list[str]:
    """The model-specific scores (`extra_scores`): few-label accuracies, conditional agreement and NLL, ..."""
    rows = []
    for name, s in evaluate["models"].items():
        if "not_applicable" in s:
            rows.append(f"| {name} | not applicable to {data_names(evaluate).dataset}: {s['not_applicable']} |")
            continue
        own_fd = "histogram" not in s  # a translation model's FD is against its truth, not in the sample table
        extra = {k: v for k, v in s.items() if (k not in SUITE_KEYS or (own_fd and k == "fd"))
                 and not k.startswith("parzen")
                 and not re.search(r"_(reached|digit)$", k)}  # StarGAN's per-target rates: evaluate.json
        if extra:
            rows.append(f"| {name} | " + ", ".join(f"{k} = {_fmt(v, 4)}" for k, v in extra.items()) + " |")
    claims = [f"- **{c.model}**: {c.paper}: {c.claim}" for c in t.claims if c.model in evaluate["models"]]
    claims = ["The translation papers' claims, for the rows above:", "", *claims, ""] if claims else []
    return (["| model | its own scores |", "|---|---|", *rows, ""] + claims) if rows else []


def _targets(run: Run, t: Targets) -> list[str]:
    """This run's value of every target it measured (the evaluator's has its own line), with its verdict: met or
    not met only on the target's whole protocol and, for a paper's number, the paper's recipe."""
    rows = []
    for target in t.targets:
        value = run.value(target)
        if value is None or target.model == "evaluator":
            continue
        rows.append(f"| {target.model} | {target.text()} | {run.recipe(target)} | {show(target, value)} | "
                    f"{run.judge(target).text()} |")
    return (["| model | target (gpu profile) | recipe | measured here | verdict |", "|---|---|---|---|---|", *rows, ""]
            if rows else [])


def _gpu_overview(runs: list[Run], t: Targets) -> list[str]:
    """Each target once, scored by the most recent gpu run that has its model (by evaluation time: the latest
    recipe, never the best of several runs), with that run's epochs; the sections below hold each run in full.
    A target that no gpu run has scored yet says so."""
    rows = []
    for target in t.targets:
        if target.model == "evaluator":
            continue
        # a paper's number: the latest run of the paper's recipe (pending until one is made), then ours beside it
        looks = [(True, "paper's"), (False, OURS)] if target.paper_number else [(None, "")]
        for paper, whose in looks:
            found = latest(runs, target, paper=paper)
            if found is None:
                if paper is not False:  # ours unmeasured beside a paper's number: no row
                    rows.append(f"| {target.model} | {target.text()} | {whose} | pending | | no "
                                f"{'paper-recipe ' if paper else ''}gpu run yet |")
                continue
            run, value = found
            rows.append(f"| {target.model} | {target.text()} | {run.recipe(target)} | {show(target, value)} | "
                        f"{run.judge(target).text()} | {run.where(target)} |")
    return ["## GPU targets, each by its latest gpu run", "",
            "| model | target (gpu profile) | recipe | measured | verdict | run (evaluated, epochs of the profile's) |",
            "|---|---|---|---|---|---|", *rows, "",
            "A gpu run is a run of the gpu profile's params, on the machine named. The profile's epochs are those "
            "of its recipe when the run was made (a later recipe may differ); each run's section below links the "
            "params it used. A paper's number gets a verdict only from a run of the paper's recipe over the "
            "paper's whole protocol; our recipe's number is listed beside it, with how that recipe differs.", ""]


def _flow_gain(runs: list[Run], t: Targets) -> list[str]:
    """Rezende & Mohamed's claim is what the flows add: each planar-flow model's latest gpu test NLL beside the
    latest run of its flow-less twin, and the difference in nats; once on our recipe (twin: recipe `flowless`) and
    once on the paper's (twin: `paper_flowless`), each twin with its own recipe's backbone and budget."""
    rows = []
    for target in t.targets:
        name = target.model
        # by the registry's file name: the report imports no model code (its dvc.yaml deps)
        if name not in GENERATIVE_MODULES or module_file(name) != FLOW_FILE or not target.key.endswith(".test_nll"):
            continue
        for paper, control in ((False, FLOWLESS), (True, PAPER_FLOWLESS)):
            flows, twin = latest(runs, target, paper=paper), latest(runs, target, recipe=control)
            cells = ["pending" if found is None else f"{show(target, found[1])} ({found[0].where(target)})"
                     for found in (flows, twin)]
            gain = f"{twin[1] - flows[1]:+.2f}" if flows and twin else "pending"
            recipe = f"{PAPER_RECIPE if paper else OURS} (twin: `{control}`)"
            rows.append(f"| {name} | {target.note} | {recipe} | {cells[0]} | {cells[1]} | {gain} |")
    if not rows:
        return []
    return ["## What the planar flows add (gpu)", "",
            "| model | flows | recipe | test NLL with the flows | flow-less twin (K = 0) | gain (nats) |",
            "|---|---|---|---|---|---|", *rows, "", "Each twin is the same model and recipe with K = 0 (`python "
            "pipeline/gpu_models.py --recipe flowless flow_vae`, or `--recipe paper_flowless` beside `--recipe "
            "paper`): the same backbone, warm-up and budget, so the gain is the flows' own. Positive: the flows "
            "lower the NLL. The paper's own gains are its Table 2 rows against its K = 0 row.", ""]


PEER_BENCH_FILES = ("bench.json", "bench_peers.json")  # in metrics/gpu/: `make gpu`'s and `gpu_plan.py bench`'s


def _peer_row(gpu: Path, model: str, batch: int, device: str | None) -> dict | None:
    """Our fastest plain `genzoo bench` row of `model` at `batch` on a GPU whose name holds `device` (None: any
    GPU), CUDA graphs preferred (the engine's default path)."""
    rows = [r for name in PEER_BENCH_FILES if (gpu / name).exists()
            for r in read_json(gpu / name).get("results", [])]
    rows = [r for r in rows if r.get("model") == model and r.get("batch_size") == batch
            and r.get("path", "plain") == "plain" and "cpu" not in r.get("device", "cpu")
            and (device is None or device in r.get("device", ""))]
    return max(rows, key=lambda r: (bool(r.get("cuda_graphs")), r["steps_per_s"]), default=None)


def _peer_ratio(gpu: Path, t: Targets) -> list[str]:
    """Our training speed beside other codebases' scripts for the same model and batch, as a ratio only where
    both ran on the same GPU model; pending otherwise (never scaled from another GPU)."""
    if not t.peers:
        return []
    lines = ["## Training speed beside other codebases", "",
             "| model | batch | peer's script | peer: s per epoch | ours: s per 60k images | ratio | target | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for peer in t.peers:
        same = _peer_row(gpu, peer.model, peer.batch, peer.gpu)
        head = f"| {peer.model} | {peer.batch} | {peer.script} | {_fmt(float(peer.seconds))} ({peer.gpu}) |"
        if same is None:
            other = _peer_row(gpu, peer.model, peer.batch, None)
            seen = (f"pending: no {peer.gpu} bench (ours on {other['device']}: "
                    f"{_fmt(_per_60k(other), 3)} s, not compared)" if other else "pending: no gpu bench yet")
            lines.append(f"{head} — | — | ≥ {peer.ratio:g}× | {seen} |")
            continue
        ours = _per_60k(same)
        ratio = peer.seconds / ours
        verdict = "met" if ratio >= peer.ratio else "not met"
        lines.append(f"{head} {_fmt(ours, 3)} ({same['device']}) | {ratio:.1f}× | ≥ {peer.ratio:g}× | {verdict} |")
    return lines + ["", "The peers' figures come from another run, with their own scripts and defaults, on the same "
                        "GPU model. Ours are `genzoo bench` rows of our model at the gpu profile's size (the "
                        "peers' nets are their own), the training loop with data on the device, in "
                        "`metrics/gpu/bench*.json`, made by `python pipeline/gpu_plan.py bench`. A ratio is given "
                        "only for the same GPU model.", ""]


def _per_60k(row: dict) -> float:
    """Seconds per 60,000 training images (the peers' epoch); a row from before the field: from its steps/s."""
    return row.get("seconds_per_60k_images") or 60000 / row["batch_size"] / row["steps_per_s"]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _measured(value) -> str:
    return _fmt(value, 4 if isinstance(value, float) and abs(value) < 1 else 2)  # a rate: 0.9985, not 1.00


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


def _sample_table(evaluate: dict, t: Targets) -> list[str]:
    """The metric suite: every sampling model beside the real-data floor (blank where a run predates a metric)."""
    lines = ["| samples of | FD-evaluator ↓ | KID ×1000 ↓ | precision ↑ | recall ↑ | Parzen LL (nats) ↑ | "
             "classes hit | KL to uniform ↓ | paper (Parzen) |", "|---|---|---|---|---|---|---|---|---|"]
    noun = data_names(evaluate).noun
    rows = {**{k: s for k, s in evaluate["models"].items() if "histogram" in s},
            f"real training {noun} (floor)": evaluate["real_test"]}
    if "real_test_binarized" in evaluate:  # the floor of the models held to the binarized test images
        rows[f"real training {noun}, binarized (their floor)"] = evaluate["real_test_binarized"]
    for name, s in rows.items():
        kid = f"{s['kid'] * 1000:.2f} ± {s['kid_std'] * 1000:.2f}" if "kid" in s else "—"
        parzen = f"{s['parzen_ll']:.1f} ± {s['parzen_stderr']:.1f} (σ={s['parzen_sigma']:.3g})" \
            if "parzen_ll" in s else "—"
        shown = f"{name} (vs binarized {noun})" if s.get("reference") == "binarized" and name in evaluate["models"] \
            else name
        lines.append(f"| {shown} | {_fmt(s.get('fd'))} | {kid} | {_fmt(s.get('precision'), 3)} | "
                     f"{_fmt(s.get('recall'), 3)} | {parzen} | {s['classes_hit']}/{len(s['histogram'])} | "
                     f"{s['kl_to_uniform']:.4f} | {_anchors(t, 'evaluate.json', f'models.{name}.parzen_ll')} |")
    return lines


def _likelihood_table(evaluate: dict, folder: Path, budgeted: dict, t: Targets) -> list[str]:
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
                     f"{took} ({train['epochs']} epochs) | {_anchors(t, 'evaluate.json', f'models.{name}.test_nll')} |")
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


def _anogan(folder: Path, t: Targets, names: Naming | None = None) -> list[str]:
    """AUROC per normal class (one-vs-rest) for AnoGAN and its two baselines, beside the published means."""
    file = folder / "anogan.json"
    if not file.exists():
        return []
    s = read_json(file)
    methods = list(s["mean_auroc"])
    classes = [str(c) for c in s["classes"]]
    lines = ["Anomaly detection (`genzoo anogan`, one-vs-rest, AUROC; " + s["protocol"] + ")", "",
             "| normal class | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    label = names.label if names else str  # "3 (Dress)" on a data set of named classes
    lines += [f"| {label(c)} | " + " | ".join(f"{s['auroc'][m][c]:.3f}" for m in methods) + " |" for c in classes]
    lines.append(f"| **mean over {len(classes)}** | " + " | ".join(f"**{s['mean_auroc'][m]:.3f}**" for m in methods)
                 + " |")
    secs = s["seconds"]
    published = [f"{a.note or a.model} {a.value_text()} ({a.source()})" for a in t.anchors if a.file == "anogan.json"]
    lines += ["", ("Published means over the ten classes: " + "; ".join(published) + ". " if published else "")
              + f"Batched inversion of {secs['images']} test images × {s['inversion_steps']} steps: "
              f"{secs['inversion_mean']:.1f} s per class on {secs['device']}"
              + (f"; one image at a time it would take {secs['single_extrapolated_s']:.0f} s "
                 f"(×{secs['speedup']:.1f}, timed on {secs['single_images']} images)" if "speedup" in secs else "")
              + ".", ""]
    return lines


def _triplegan(folder: Path, t: Targets) -> list[str]:
    """C's test error with the shared few labels, Triple-GAN against the same C trained on the labels alone."""
    file = folder / "triplegan.json"
    if not file.exists():
        return []
    s = read_json(file)

    def cell(entry: dict) -> str:
        if len(entry["test_error"]) < 2:  # a mean over one seed has no spread to show
            return f"{100 * entry['mean']:.2f} % (one seed: no spread)"
        return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f} % " + \
            "(" + ", ".join(f"{100 * e:.2f}" for e in entry["test_error"]) + ")"

    first = f" after {s['c_pretrain_steps']} of C alone" if s.get("c_pretrain_steps") else ""  # the paper recipe's
    head = (f"Semi-supervised classification (`genzoo triplegan`, {s['labelled']} labels, seeds {s['seeds']}, "
            f"{s['steps']} steps per seed{first}):")
    rows = ["| classifier | test error, mean ± std (per seed) | paper |", "|---|---|---|",
            f"| Triple-GAN's C | {cell(s['triplegan'])} | {_anchors(t, 'triplegan.json', 'triplegan.mean')} |"]
    if s.get("baseline") is None:  # a part run within a window (pipeline/gpu_models.py) trains no baseline
        return [head, "", *rows, "", f"Baseline: {s['baseline_note']}.", ""]
    ours, alone = ([100 * e for e in s[k]["test_error"]] for k in ("triplegan", "baseline"))
    difference = sum(ours) / len(ours) - sum(alone) / len(alone)
    gap = f"Triple-GAN's C against the same C on the labels alone: {difference:+.2f} points"
    if len(ours) > 1 and len(alone) > 1:
        test = welch(ours, alone)
        gap += (f" over {len(ours)} seeds (Welch's t = {test.t:.2f}, df = {test.df:.1f}, p = {test.p:.2g}: "
                + ("separated" if test.p < ALPHA else "within the noise of the seeds") + ").")
    else:
        gap += " on one seed: no test of the difference."
    alone_anchors = _anchors(t, "triplegan.json", "baseline.mean")
    return [head, "", *rows, f"| the same C on the labels alone | {cell(s['baseline'])} | {alone_anchors} |",
            "", f"Baseline: {s['baseline_note']}. {gap}", ""]


def _compare(folder: Path, t: Targets, noun: str = "digits") -> list[str]:
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
    seed_claims = {c.model: c.claim for c in t.seed_claims}
    lines = [f"GAN vs VAE, measured (`genzoo compare`, training seeds {s['seeds']}, mean ± std over seeds; "
             f"real test {noun}' grey share {real['grey_share']:.3f}):", "",
             "| model | the seed's claim (its words, not measured) | FD-evaluator | grey ratio (blur; real = 1) | "
             "Parzen LL | test NLL | "
             "classes hit (seeds missing one) | precision / recall | memorization: median ratio pixels / features "
             "(near-copies) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in s["models"]:
        a = s["aggregates"][name]
        claim = f"“{seed_claims[name]}”" if name in seed_claims else ""
        lines.append(f"| {name} | {claim} | {cell(a, 'fd')} | {cell(a, 'grey_ratio')} | "
                     f"{cell(a, 'parzen_ll', 1)} | {cell(a, 'test_nll')} | {span(a, 'classes_hit')} "
                     f"({a['seeds_missing_a_class']}) | {cell(a, 'precision')} / {cell(a, 'recall')} | "
                     f"{cell(a, 'mem_pixel_ratio')} / {cell(a, 'mem_feature_ratio')} "
                     f"({cell(a, 'mem_pixel_near_copies', 3)}) |")
    per_seed = {n: list(s.get("runs", {}).get(n, {}).values()) for n in s["models"]}

    def named(key: str, spread: bool = False, transform=lambda v: v) -> str:
        """The leader named only when a test over the seeds separates it from every other model."""
        groups = {n: [transform(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
                  for n, rows in per_seed.items()}
        if len(groups) < 2 or not all(groups.values()):
            return "no test (per-seed values not recorded)"
        return separate(groups, spread=spread).text(groups)

    lines += ["", f"Lowest FD-evaluator: {named('fd')}. Grey share closest to real {noun} (per seed, "
              f"|grey ratio − 1|): {named('grey_ratio', transform=lambda v: abs(v - 1))}. Smallest spread of FD "
              f"over seeds: {named('fd', spread=True)}. The seed's claims are the words of the tutorial the "
              "seeds quote, not measurements; every other column is measured here. A memorization ratio below 1 "
              f"would mean samples sit closer to the training {noun} than unseen test {noun} do (near-copies: "
              f"share of samples closer than the test {noun}' 1 % quantile). Protocol: "
              + s["protocol"]["memorization"] + ".", ""]
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
    if "ratio_non_saturating_to_minimax" in early:  # G and D learning together, as in training
        lines[-1] += (f" Early training (the first {early['window']} steps, D learning beside G): mean ‖∇G‖ "
                      f"non-saturating {early['non_saturating']:.3g} vs minimax {early['minimax']:.3g}, ratio "
                      f"**{early['ratio_non_saturating_to_minimax']:.2f}**.")
    if isinstance(at_start, dict):
        lines[-1] += (" Saturation at the initial G against a converged D: ‖∇G‖ " + ", ".join(
            f"{k.replace('_', '-')} {v:.3g}" for k, v in at_start.items()) + ".")
        ratio = early.get("ratio_non_saturating_to_minimax")
        if ratio is not None:  # which of the two probes shows saturation, from the numbers
            lines[-1] += (f" Early training {'shows' if ratio >= 2 else 'does not show'} it (ratio {ratio:.2f}); "
                          "the converged-D probe is the paper's argument, D confident at a poor G.")
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


def profile_section(run: Run, title: str, base: Path, t: Targets) -> list[str]:
    """Markdown for one profile's run, read from its folder (metrics/, metrics/gpu/ or a part of it); pictures
    linked from the page in `base`."""
    folder = run.folder
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
    shown = f"{folder.as_posix()}/"
    lines = [f"## {title}", "",
             f"Profile `{prov['profile']}` · hardware: {prov['device']} · commit `{commit[:10]}`{dirty} · "
             f"data `{prov['dataset']}` (hash `{prov['data_hash'][:12]}`) · command: `{command}`"
             + (f" · its params and lock: `{shown}params.yaml`, `{shown}dvc.lock`"
                if (folder / "dvc.lock").exists() else
                f" · its params: `{shown}params.yaml`" if (folder / "params.yaml").exists() else ""), "",
             *_protocol(evaluate), ""]
    lines += _budget(run_info)
    lines += _sample_table(evaluate, t) + [""] + _likelihood_table(evaluate, folder, run_info.get("models", {}), t)
    lines += [""] + _model_scores(evaluate, t)
    names = data_names(evaluate)
    lines += _anogan(folder, t, names) + _triplegan(folder, t) + _targets(run, t)
    accuracy = evaluator["test"]["accuracy"] * 100
    line = (f"Evaluator (frozen CNN behind every metric): test accuracy **{accuracy:.2f} %** after "
            f"{evaluator['epochs']} epochs ({evaluator['train_seconds']:.0f} s)"
            + ("" if names.digits else f" on the classes of {names.describe()}"))
    for target in (x for x in t.targets if x.model == "evaluator"):
        value = run.value(target)
        line += f"; target {target.text()} ({target.paper})" + (
            "" if value is None else f": {run.judge(target).text()}")
    lines += ["", line + ".", ""]
    if (folder / "perceptual.json").exists():  # the gpu snapshots have it only when they trained EnhanceNet
        perceptual = read_json(folder / "perceptual.json")
        lines += [f"EnhanceNet's perceptual network (frozen VGG-style CNN its losses look through, trained apart "
                  f"from the evaluator): test accuracy {perceptual['test']['accuracy'] * 100:.2f} % after "
                  f"{perceptual['epochs']} epochs ({perceptual['train_seconds']:.0f} s).", ""]
    lines += _compare(folder, t, names.noun) + _saturation(folder) + _toy(folder)
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
            lines.append(" ".join(f"![{name} {p.stem}]({_link(p, base)})" for p in pictures))
            lines.append("")
    return lines


def render(metrics: Path, base: Path, t: Targets | None = None) -> str:
    """docs/results.md: the summary, the targets as declared, the default run, the gpu overview and each gpu run.
    Picture links are relative to `base`, the folder the page is written to."""
    t = t or load_targets()
    runs = gpu_runs(metrics)
    lines = ["# genzoo results", "",
             "Generated by `genzoo report` from `metrics/` and `src/genzoo/targets.yaml`; do not edit by hand. "
             "The README shows the summary and one picture per model.", "",
             "## Summary", "", *summary(metrics, runs, t), *targets_table(t)]
    if (metrics / "evaluate.json").exists():
        lines += profile_section(open_run("default", metrics), "Default pipeline (the last `dvc repro` of this checkout)",
                                 base, t)
    if runs:
        lines += _gpu_overview(runs, t) + _flow_gain(runs, t)
    lines += _peer_ratio(metrics / "gpu", t)
    gpu = metrics / "gpu"
    if not (gpu / "evaluate.json").exists():
        lines += ["## GPU profile", "", "Pending: no gpu-profile run is committed yet (`make gpu` on a GPU "
                  "machine writes `metrics/gpu/`).", ""]
    for run in runs:  # the `make gpu` snapshot, then pipeline/gpu_models.py's parts (some models, a lease's minutes)
        recipes = sorted({e.get("recipe") for e in run.budgeted.values()} - {None, OURS})
        title = ("GPU profile (snapshot of the last `make gpu`)" if run.folder == gpu else
                 f"GPU profile, part `{run.folder.name}` (pipeline/gpu_models.py"
                 f"{', recipe ' + ', '.join(f'`{r}`' for r in recipes) if recipes else ''})")
        lines += profile_section(run, title, base, t)
    return "\n".join(lines).rstrip() + "\n"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px}img{margin:4px;image-rendering:pixelated;width:300px}")


def to_html(markdown: str) -> str:
    """The results page as HTML: CommonMark plus tables (markdown-it-py), raw HTML in the markdown escaped."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>genzoo results</title><style>{STYLE}</style>"
            f"</head><body>\n{body}</body></html>\n")


def splice_readme(readme: Path, section: str) -> bool:
    """Replace the README's generated section in place; False (and no change) when the markers are missing."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    write_text(readme, f"{before}{START}\n{section}{END}{after}")
    return True


def report_stage(params: Params, metrics: Path, readme: Path, results: Path | None = None) -> str:
    """Writes `results` (default: docs/results.md beside the README), metrics/report.html and the README's
    summary; returns the results page."""
    t = load_targets()
    results = results or readme.parent / "docs" / "results.md"
    missing = [n for n in GENERATIVE if not (metrics / f"{n}.json").exists()]
    if missing:
        print(f"warning: no metrics yet for {', '.join(missing)}")
    page = render(metrics, results.parent, t)
    write_text(results, page)
    write_text(metrics / "report.html", to_html(render(metrics, metrics, t)))
    if not splice_readme(readme, readme_block(metrics, readme.parent, t)):
        print(f"warning: {readme} has no {START} ... {END} markers; left unchanged")
    print(f"wrote {results}, {metrics / 'report.html'} and the summary in {readme}")
    return page
