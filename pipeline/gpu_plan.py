"""The gpu profile as a plan of parts for GPU windows of minutes: what each part costs, what is done, what is next.

A part is one registered model trained at the gpu profile's recipe by pipeline/gpu_models.py (its epochs kept,
paused at a checkpoint when a window ends and resumed in the next). For each part the plan reads:

- its device minutes: the profile's epochs x steps per epoch / steps per second, from the fastest committed gpu
  measurement of that model (a finished run's steps/s in a snapshot's run.json, a timing in metrics/gpu/bench.json
  or a run's `bench_only`); "unmeasured" where there is none, never a guess;
- its state, from the committed snapshots (metrics/gpu/**/run.json): done (a snapshot trained the profile's
  epochs), partial (paused at a step, or capped to fewer epochs by a budget), or pending;
- its targets in src/genzoo/targets.yaml (the gpu profile's), so the next window goes to the most targets per
  minute.

    python pipeline/gpu_plan.py show                      # the table (--readme: also into README's GPU section)
    python pipeline/gpu_plan.py run --budget 540          # the next parts that fit 540 s, through gpu_models.py
    python pipeline/gpu_plan.py bench                     # the short benchmark a window starts with (below)

`run` names the parts for one gpu_models.py call with `--checkpoints .gpu/checkpoints` (carry that folder between
windows) and the snapshot folder metrics/gpu/<first part>; the part runner stops within the budget by itself.
A recipe of pipeline/conf/recipes.yaml (`paper`: the paper's own) adds a part `<model>@<recipe>` per model it
names, priced only from that recipe's own runs; one window runs parts of one recipe.
AnoGAN, Triple-GAN and `compare` are DVC stages of many small models, not parts yet: the plan lists them as such.
A recipe for one of them is a part, run by gpu_models.py as a stage part (`triplegan@paper`: the Triple-GAN's
seeds at the paper's recipe, without the classifier-alone baseline).

`bench` times, at the gpu profile's params, every model and batch size that src/genzoo/targets.yaml's `peers`
compare with another codebase (the report's speed table), eager and with CUDA graphs, and DCGAN also on the
data-parallel path with one rank (its overhead); it writes metrics/gpu/bench_peers.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- genzoo:gpu-plan:start -->", "<!-- genzoo:gpu-plan:end -->"
STAGES = {"anogan": ("the one-vs-rest protocol: 10 one-class DCGANs, VAEs and autoencoders (each kind's ten as "
                     "copies in one program), then the inversion"),
          "triplegan": "3 seeds of Triple-GAN beside the classifier alone",
          "compare": "3 seeds of four models"}
STAGE_COMMAND = "dvc exp run -S profile=gpu {}"  # a stage of the gpu DAG alone (and what it needs upstream)
TRAIN_IMAGES = 55000  # the base training split (60,000 less the 5,000 kept for validation)
ALL_TRAINING_IMAGES = 60000  # Triple-GAN's `unlabelled: train+val` (the authors' script): the split and validation
# A paused part's checkpoint rides to the next window in the 64 MiB a device call carries, beside the tree (~12 MB)
# and the data mirror (~12 MB): pipeline/gpu_window.sh
CARRY_MB = 40


@dataclass
class Part:
    name: str
    epochs: int  # the gpu profile's
    targets: int  # in targets.yaml, for the gpu profile
    steps_per_s: float | None = None
    steps_per_epoch: int | None = None
    measured_on: str = ""  # where the steps/s come from
    state: str = "pending"
    steps_done: int = 0
    epochs_capped: int = 0  # a budgeted run that trained fewer epochs than the profile's
    snapshot: str = ""
    checkpoint_mb: float | None = None  # its weights and Adam's two moments in fp32 (the engine's checkpoint, about)

    @property
    def minutes(self) -> float | None:
        if not self.steps_per_s or not self.steps_per_epoch:
            return None
        return self.epochs * self.steps_per_epoch * (1 - self.fraction_done) / self.steps_per_s / 60

    @property
    def fraction_done(self) -> float:
        total = self.epochs * self.steps_per_epoch if self.steps_per_epoch else 0
        return min(1.0, self.steps_done / total) if total else 0.0

    def priority(self) -> tuple:
        """Unfinished first; measured before unmeasured; then the most targets per device minute."""
        minutes = self.minutes
        return (self.state == "done", minutes is None, -(self.targets / max(minutes or 1.0, 0.1)), self.name)


def _snapshots(metrics: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(metrics.glob("gpu/**/run.json")):
        try:
            found.append((path.parent, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError) as err:
            sys.exit(f"{path}: not a run record: {err}")
    return found


def _on_gpu(hardware: str) -> bool:
    """"NVIDIA H100 80GB HBM3" or "NVIDIA H100 ... (<cpu>, 16 cores)", not "cpu (2 cores)" or "<cpu>, 2 cores"."""
    return bool(hardware) and not (hardware.startswith("cpu") or hardware.endswith(" cores"))


def _images(section: dict) -> int:
    """The images an epoch of the section walks: the training split, or all 60,000 (Triple-GAN's train+val)."""
    return ALL_TRAINING_IMAGES if section.get("unlabelled") == "train+val" else TRAIN_IMAGES


def _measure(part: Part, steps_per_s: float, steps_per_epoch: int | None, where: str) -> None:
    if steps_per_s and (part.steps_per_s is None or steps_per_s > part.steps_per_s):
        part.steps_per_s, part.measured_on = steps_per_s, where
        if steps_per_epoch:
            part.steps_per_epoch = steps_per_epoch


def _meta_build(name: str, params: dict):
    """The model built on the meta device (no weights are made): what it declares (`batches_per_step`, the
    minibatches one step consumes, set from its config: a GAN's k, SimGAN's k_d + k_g) and how many weights it has."""
    import torch

    from genzoo.models.registry import TRAINABLE
    from genzoo.params import build

    model = TRAINABLE[name]
    with torch.device("meta"):
        return model(build(model.Config, params[name], name, require_all=False))


def _checkpoint_mb(model) -> float:
    """About the size of a model's checkpoint: each fp32 weight and Adam's two moments of it."""
    return sum(p.numel() for p in model.parameters()) * 4 * 3 / 2**20


def plan(params: dict, metrics: Path, targets: Path, models: list[str], recipes: dict | None = None) -> list[Part]:
    """Every registered model's part, and each recipe's (pipeline/conf/recipes.yaml, or `recipes`), measured and
    placed from the committed gpu snapshots."""
    from gpu_models import load_recipes

    from genzoo.targets import OURS, PAPER_RECIPE

    counts: dict[str, int] = {}  # the gpu targets of each model
    paper_counts: dict[str, int] = {}  # those against a paper's number: a paper recipe's
    for target in yaml.safe_load(targets.read_text()).get("targets", []):
        if "gpu" in target.get("profiles", ["gpu"]):
            counts[target["model"]] = counts.get(target["model"], 0) + 1
            if target.get("against") == PAPER_RECIPE:
                paper_counts[target["model"]] = paper_counts.get(target["model"], 0) + 1

    parts = {}
    for name in models:
        section, model = params[name], _meta_build(name, params)
        base = section.get("batch_size")
        parts[name] = Part(name, int(section["epochs"]), counts.get(name, 0),
                           steps_per_epoch=_images(section) // (base * model.batches_per_step)
                           if base and _base_data(name) else None, checkpoint_mb=_checkpoint_mb(model))
    for recipe, overlays in (load_recipes() if recipes is None else recipes).items():
        for name, overlay in overlays.items():
            # a part of its own, a stage's too (triplegan@paper), with its own targets: the paper's numbers for
            # `paper`, our thresholds for another recipe
            if name in parts or (name in STAGES and name in params):
                section = {**params[name], **overlay}
                model, batch = _meta_build(name, {name: section}), section.get("batch_size")
                parts[f"{name}@{recipe}"] = Part(
                    f"{name}@{recipe}", int(section["epochs"]),
                    paper_counts.get(name, 0) if recipe == PAPER_RECIPE else counts.get(name, 0) - paper_counts.get(name, 0),
                    steps_per_epoch=_images(section) // (batch * model.batches_per_step)
                    if batch and _base_data(name) else None, checkpoint_mb=_checkpoint_mb(model))
    bench = metrics / "gpu" / "bench.json"
    if bench.exists():
        for row in json.loads(bench.read_text()).get("results", []):
            if row.get("model") in parts and _on_gpu(row.get("device", "")) and \
                    row.get("batch_size") == params[row["model"]].get("batch_size"):
                _measure(parts[row["model"]], row["steps_per_s"], row.get("steps_per_epoch"),
                         "metrics/gpu/bench.json")
    for folder, run in _snapshots(metrics):
        where = folder.relative_to(metrics.parent).as_posix()
        for name, timed in run.get("bench_only", {}).items():  # at the run's recipe: a part of that recipe
            name = name if run.get("recipe", OURS) == OURS else f"{name}@{run['recipe']}"
            if name in parts and _on_gpu(run.get("hardware", "")):
                _measure(parts[name], timed.get("steps_per_s"), None, where)
        for model, entry in run.get("models", {}).items():
            recipe = entry.get("recipe", run.get("recipe")) or OURS
            name = model if recipe == OURS else f"{model}@{recipe}"
            if name not in parts:
                continue
            part = parts[name]
            if _on_gpu(run.get("hardware", "")) and "paused_at" not in entry and not entry.get("runs"):
                _measure(part, entry.get("steps_per_s"), None, where)
            if entry.get("profile_epochs") != part.epochs:
                continue  # a run of another recipe's length says nothing of this one's state
            if "paused_at" in entry:
                if part.state != "done" and entry["paused_at"] >= part.steps_done:
                    part.state, part.steps_done, part.snapshot = "partial", entry["paused_at"], where
                    part.steps_per_epoch = part.steps_per_epoch or entry["total_steps"] // part.epochs
            elif entry.get("epochs") == part.epochs:
                part.state, part.snapshot = "done", where
                part.steps_done = part.epochs * (part.steps_per_epoch or 0)
            elif part.state != "done" and not part.steps_done and entry.get("epochs", 0) > part.epochs_capped:
                part.state, part.snapshot = "partial", where  # capped by its budget: run it again in full
                part.epochs_capped = entry["epochs"]
        for name, part in parts.items():  # a stage's own file: the whole gpu DAG (`make gpu`) trained it
            summary = folder / f"{name}.json"
            if not summary.exists() or part.state == "done":
                continue
            trained = json.loads(summary.read_text())
            if trained.get("epochs") == part.epochs and not trained.get("not_applicable"):
                part.state, part.snapshot = "done", where
            device = trained.get("provenance", {}).get("device", "")
            if _on_gpu(device) and trained.get("epochs") and trained.get("steps"):
                _measure(part, trained.get("final", {}).get("train/steps_per_s"),
                         trained["steps"] // trained["epochs"], where)
    return sorted(parts.values(), key=Part.priority)


def _base_data(name: str) -> bool:
    """Whether `name` trains on the base images (its steps per epoch follow from its batch size)."""
    from genzoo.models.registry import TRAINABLE

    return TRAINABLE[name].dataset is None


def table(parts: list[Part], compact: bool = False) -> list[str]:
    """The plan as a markdown table; `compact` (the README's) folds the pending parts that no target reads (controls,
    ablations) into one row."""
    lines = ["| part | gpu epochs | device minutes (left) | measured on | state | targets |",
             "|---|---|---|---|---|---|"]
    folded = [p.name for p in parts if compact and not p.targets and p.state == "pending"]
    for p in parts:
        if p.name in folded:
            if p.name == folded[0]:
                lines.append(f"| {', '.join(folded)} | — | — | — | pending | 0 |")
            continue
        minutes = "—" if p.state == "done" else "unmeasured" if p.minutes is None else f"{p.minutes:.1f}"
        state = p.state + (f" ({p.snapshot})" if p.snapshot else "")
        if p.state == "partial" and p.steps_done:
            state = f"partial: paused at {p.fraction_done:.0%} of its steps ({p.snapshot})"
        elif p.state == "partial":
            state = f"partial: {p.epochs_capped} of {p.epochs} epochs in a budget ({p.snapshot}); again in full"
        lines.append(f"| {p.name} | {p.epochs} | {minutes} | {p.measured_on or '—'} | {state} | {p.targets} |")
    lines += [f"| {name} (stage) | — | unmeasured | — | pending: {what}; not a part yet: `{STAGE_COMMAND.format(name)}` "
              f"| — |" for name, what in STAGES.items()]
    return lines


def next_parts(parts: list[Part], budget_s: float, carry_mb: float = CARRY_MB) -> list[str]:
    """The unfinished parts for one window, in the plan's order: those that fit the budget whole, and after them
    the first that does not (it trains as far as the window goes and pauses at a checkpoint). A part that would
    pause with a checkpoint too large to carry to the next window is passed over: it needs a window it fits. An
    unmeasured part goes alone with the window's whole budget: its run measures it."""
    chosen, left = [], budget_s / 60
    for p in (p for p in parts if p.state != "done"):
        if p.minutes is None:
            return chosen or [p.name]
        if p.minutes > left and (p.checkpoint_mb or 0) > carry_mb:
            continue
        chosen.append(p.name)
        left -= p.minutes
        if left <= 0:
            break
    return chosen


def write_readme(readme: Path, lines: list[str]) -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"{readme}: no {START} ... {END} section to fill")
    before, rest = text.split(START, 1)
    new = f"{before}{START}\n" + "\n".join(lines) + f"\n{END}{rest.split(END, 1)[1]}"
    if new != text:
        readme.write_text(new)
    return new != text


def _params(path: Path | None) -> dict:
    if path is not None:
        return yaml.safe_load(path.read_text())
    from gpu_models import compose_gpu_params

    out = ROOT / ".gpu" / "gpu.yaml"
    out.parent.mkdir(exist_ok=True)
    compose_gpu_params(out)
    return yaml.safe_load(out.read_text())


def bench(raw: dict, targets: Path, out: Path, steps: int, data: Path | None, command: str) -> list[dict]:
    """The peers' models at the peers' batch sizes (see the module docstring); returns the rows written."""
    from genzoo.engine.io import write_json
    from genzoo.engine.tracking import record_provenance
    from genzoo.engine.training import resolve_device
    from genzoo.models.registry import parse_params
    from genzoo.targets import load_targets
    from genzoo.tools.bench import run_bench

    peers = load_targets(targets).peers
    params = parse_params(raw, models=list(dict.fromkeys(p.model for p in peers)))
    if data is None:  # the window's own copy of the data (GENZOO_DATA_MIRROR: offline)
        from genzoo.stages.download import download_stage
        from genzoo.stages.preprocess import preprocess_stage

        data = ROOT / ".gpu" / "bench" / "processed"
        if not (data / "meta.json").exists():
            download_stage(params, data.parent / "raw", offline=True)
            preprocess_stage(params, data.parent / "raw", data)
    rows, provenance = [], record_provenance(resolve_device(params.engine.device), command)
    for peer in peers:  # written after each peer: a failure late in the loop keeps the rows before it
        rows += run_bench([peer.model], params, data, steps, [peer.batch], None, compare_eager=True,
                          distributed_path=peer.model == "dcgan")
        write_json(out, {"results": rows, "provenance": provenance})
    print(f"wrote {out}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("show", "run", "bench"))
    parser.add_argument("--params", type=Path, help="the composed gpu params (default: pipeline/conf, profile=gpu)")
    parser.add_argument("--metrics", type=Path, default=ROOT / "metrics")
    parser.add_argument("--targets", type=Path, default=ROOT / "src" / "genzoo" / "targets.yaml")
    parser.add_argument("--readme", type=Path, nargs="?", const=ROOT / "README.md",
                        help="show: also write the table into this README's gpu-plan section")
    parser.add_argument("--budget", type=float, help="run: seconds of device time for this window")
    parser.add_argument("--checkpoints", type=Path, default=Path(".gpu/checkpoints"))
    parser.add_argument("--steps", type=int, default=1000, help="bench: timed steps per row")
    parser.add_argument("--data", type=Path, help="bench: preprocessed data (default: made in .gpu/bench)")
    args = parser.parse_args(argv)

    from genzoo.models.registry import GENERATIVE

    raw = _params(args.params)
    if raw.get("run", {}).get("profile") != "gpu":
        sys.exit(f"{args.params}: not the gpu profile's params (run.profile: {raw.get('run', {}).get('profile')})")
    if args.command == "bench":
        command = ("python pipeline/gpu_plan.py bench" + (f" --params {args.params}" if args.params else "")
                   + (f" --steps {args.steps}" if args.steps != 1000 else ""))
        bench(raw, args.targets, args.metrics / "gpu" / "bench_peers.json", args.steps, args.data, command)
        return 0
    parts = plan(raw, args.metrics, args.targets, list(GENERATIVE))
    lines = table(parts)
    if args.command == "show":
        print("\n".join(lines))
        if args.readme and write_readme(args.readme, table(parts, compact=True)):
            print(f"wrote the plan into {args.readme}")
        return 0
    if not args.budget or args.budget <= 0:
        sys.exit("run: --budget SECONDS is required")
    names = next_parts(parts, args.budget)
    if not names:
        print("every part is done")
        return 0
    from gpu_models import main as run_parts

    recipe = names[0].partition("@")[2]
    names = [n for n in names if n.partition("@")[2] == recipe]  # one recipe per window
    out = args.metrics / "gpu" / re.sub(r"[^a-z0-9_]+", "_", names[0])
    command = [*(n.partition("@")[0] for n in names), "--budget", f"{args.budget:g}", "--out", str(out),
               "--checkpoints", str(args.checkpoints), *(["--recipe", recipe] if recipe else [])]
    if args.params:
        command += ["--params", str(args.params)]
    print("python pipeline/gpu_models.py " + " ".join(command), flush=True)
    return run_parts(command)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(1, str(ROOT / "src"))  # a lent machine's copy of the tree: genzoo is not installed there
    raise SystemExit(main())
