"""`genzoo`: one command per dvc.yaml stage, named as the stage (`genzoo train vae` runs `train@vae`), plus the
tools that are not stages. Options here are paths and modes only; every hyperparameter lives in params.yaml
(flags would bypass `dvc params diff`). Each command checks the fixed params sections and the sections of the
models it runs (genzoo.models.registry.load_params) before any work."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from genzoo.engine.errors import GenzooError
from genzoo.params import PARAMS_FILE

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train and measure the classic generative models (see README.md).")

PARAMS = typer.Option(PARAMS_FILE, "--params", help="The params file (all hyperparameters live there).")
DATA = typer.Option(Path("data/processed"), help="Preprocessed tensors.")
DERIVED = typer.Option(Path("data/derived"), help="Derived sets (translation models).")
MODELS = typer.Option(Path("models"), help="Trained models, one folder each.")
METRICS = typer.Option(Path("metrics"), help="DVC metrics, plots and pictures.")


def expected_errors(command):
    """Bad input and broken environments end with one clear line and an exit code, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GenzooError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(getattr(err, "exit_code", 1)) from None
    return wrapper


def load(params: Path, stage=None, target: str | None = None):
    """The params file, checked: the fixed sections, and in full the sections of the registry models the stage
    module says it runs (its `models_used`); the other model sections by name only."""
    from genzoo.models.registry import load_params
    from genzoo.params import read_params_file
    models_used = getattr(stage, "models_used", None)
    return load_params(params, models=models_used(read_params_file(params), target) if models_used else ())


@app.command("download")
@expected_errors
def download(params: Path = PARAMS, out: Path = typer.Option(Path("data/raw")),
             offline: bool = typer.Option(False, help="Use only the local mirror folders.")):
    """Fetch the IDX files of `data.dataset` (local mirror first, then the official mirrors); check SHA-256."""
    from genzoo.stages import download as stage
    stage.download_stage(load(params, stage), out, offline)


@app.command("preprocess")
@expected_errors
def preprocess(params: Path = PARAMS, raw: Path = typer.Option(Path("data/raw")), out: Path = DATA):
    """Validate the IDX files and write uint8 tensors, the seeded split and the fixed test binarization."""
    from genzoo.stages import preprocess as stage
    stage.preprocess_stage(load(params, stage), raw, out)


@app.command("derive")
@expected_errors
def derive(params: Path = PARAMS, data: Path = DATA, out: Path = DERIVED,
           figures: Path = typer.Option(Path("metrics/figures/derived"), help="Preview grids.")):
    """Build the derived sets of the translation models (paired, superres, unpaired, multidomain, synthetic)."""
    from genzoo.stages import derive as stage
    stage.derive_stage(load(params, stage), data, out, figures)


@app.command("strokes")
@expected_errors
def strokes(params: Path = PARAMS, data: Path = DATA, out: Path = typer.Option(Path("data/strokes")),
            raw: Path = typer.Option(Path("data/raw/quickdraw"), help="Where QuickDraw files are fetched to."),
            checksums: Path = typer.Option(Path("data/quickdraw.sha256.json"),
                                           help="QuickDraw's SHA-256 record (written on first download)."),
            figures: Path = typer.Option(Path("metrics/figures/strokes"), help="Preview grid.")):
    """Sketch-RNN's stroke-5 sequences: traced from MNIST skeletons, or QuickDraw's files (`strokes.source`)."""
    from genzoo.stages import strokes as stage
    stage.strokes_stage(load(params, stage), data, out, raw, checksums, figures)


@app.command("train")
@expected_errors
def train(model: str = typer.Argument(..., help="A registered model, `evaluator` or `perceptual`."),
          params: Path = PARAMS,
          data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS, derived: Path = DERIVED):
    """Train one model with the shared engine (resumes from its checkpoint when one fits)."""
    from genzoo.models.registry import FROZEN, GENERATIVE
    trainable = [*FROZEN, *GENERATIVE]
    if model not in trainable:
        raise GenzooError(f"unknown model {model!r}; `genzoo train` fits: {', '.join(trainable)} "
                          "(Triple-GAN has its own command: `genzoo triplegan`)")
    from genzoo.engine import distributed
    from genzoo.stages import train as stage
    checked = load(params, stage, model)
    if checked.engine.processes > 1 and not distributed.launched():  # engine.processes: N ranks via torchrun
        # a batch that cannot split fails here, in one line, before torchrun starts any rank
        distributed.check_batch(checked.model(model).batch_size, 1, distributed.World(0, checked.engine.processes),
                                model)
        argv = ["train", model, "--params", str(params), "--data", str(data), "--models", str(models),
                "--metrics", str(metrics), "--derived", str(derived)]
        code = distributed.relaunch(checked.engine.processes, argv)
        if code:
            raise GenzooError(f"the {checked.engine.processes} ranks of `genzoo train {model}` failed (torchrun "
                              f"exit code {code}); the failing rank's error is above")
        return
    stage.train_stage(model, checked, data, models, metrics, derived)


@app.command("gan_saturation")
@expected_errors
def gan_saturation(params: Path = PARAMS, data: Path = DATA, metrics: Path = METRICS):
    """Train a GAN briefly with each generator loss; record G's gradient norm (minimax saturates early)."""
    from genzoo.stages import gan_saturation as stage
    stage.gan_saturation_stage(load(params, stage), data, metrics)


@app.command("gan_toy")
@expected_errors
def gan_toy(params: Path = PARAMS, metrics: Path = METRICS):
    """The GAN paper's theory on a 1-D mixture: D vs D*, the value of the game vs -log 4, saturation."""
    from genzoo.stages import gan_toy as stage
    stage.gan_toy_stage(load(params, stage), metrics)


@app.command("anogan")
@expected_errors
def anogan(params: Path = PARAMS, data: Path = DATA, models: Path = typer.Option(Path("models/anogan")),
           metrics: Path = METRICS):
    """AnoGAN (Schlegl et al. 2017): one-class GANs, batched latent inversion of the test set, AUROC per class."""
    from genzoo.stages import anogan as stage
    stage.anogan_stage(load(params, stage), data, models, metrics)


@app.command("triplegan")
@expected_errors
def triplegan(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS):
    """Triple-GAN (Li et al. 2017) with the shared 100 labels, one run per seed, beside C trained on the labels
    alone."""
    from genzoo.stages import triplegan as stage
    stage.triplegan_stage(load(params, stage), data, models, metrics)


@app.command("compare")
@expected_errors
def compare(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS):
    """The seeds' GAN-vs-VAE table measured: sharpness, likelihood, modes, spread over seeds, memorization."""
    from genzoo.stages import compare as stage
    stage.compare_stage(load(params, stage), data, models, metrics)


@app.command("evaluate")
@expected_errors
def evaluate(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS,
             derived: Path = DERIVED,
             only: list[str] = typer.Option([], "--only", help="Score only these models (default: every one).")):
    """Measure every trained generative model through the frozen evaluator."""
    from genzoo.stages import evaluate as stage
    stage.evaluate_stage(load(params, stage), data, models, metrics, derived, only or None)


@app.command("report")
@expected_errors
def report(params: Path = PARAMS, metrics: Path = METRICS, readme: Path = typer.Option(Path("README.md"))):
    """Render metrics/ into the README's summary, docs/results.md and metrics/report.html."""
    from genzoo.stages import report as stage
    stage.report_stage(load(params, stage), metrics, readme)


@app.command("bench")
@expected_errors
def bench(model: str = typer.Option("vae", help="A registered model, or `all` (every trainable model)."),
          params: Path = PARAMS, data: Path = DATA,
          derived: Path = typer.Option(Path("data/derived"), help="The derived sets (translation models)."),
          models: Path = typer.Option(Path("models"), help="Where the frozen networks are (for a model that "
                                      "trains through one)."),
          steps: int = typer.Option(300, help="Timed steps (after warm-up)."),
          batch_size: list[int] = typer.Option([], "--batch-size", help="Batch sizes to time (default: params)."),
          precision: str = typer.Option(None, help="fp32 or bf16 on whichever device runs, for every model "
                                        "(default: params, a model section's cpu_precision on a CPU)."),
          device: str = typer.Option(None, help="cpu, cuda, ... (default: params' engine.device)."),
          out: Path = typer.Option(None, help="Also write the results as JSON here."),
          compare_eager: bool = typer.Option(False, help="Also time plain eager steps (no CUDA graphs)."),
          distributed_path: bool = typer.Option(False, help="Also time the data-parallel path with one rank.")):
    """Time training steps on this machine: steps/s and seconds per epoch (a tool, not a stage)."""
    import dataclasses

    from genzoo.engine.errors import GenzooError
    from genzoo.models.registry import TRAINABLE, load_params
    from genzoo.tools.bench import run_bench

    if precision not in (None, "fp32", "bf16"):
        raise GenzooError(f"--precision: {precision!r} is not fp32 or bf16")
    names = list(TRAINABLE) if model == "all" else [model]
    loaded = load_params(params, models=names)
    if device is not None:
        loaded = dataclasses.replace(loaded, engine=dataclasses.replace(loaded.engine, device=device))
    run_bench(names, loaded, data, steps, batch_size, out, compare_eager, derived, models, precision,
              distributed_path)


@app.command("repro")
@expected_errors
def repro(targets: list[str] = typer.Argument(None, help="Stages to bring up to date (default: all)."),
          jobs: int = typer.Option(2, "--jobs", "-j", help="Stages run at once (each by `dvc repro`)."),
          force: bool = typer.Option(False, "--force", "-f", help="Run every stage, changed or not."),
          weights: Path = typer.Option(Path("metrics/timing/cpu_dag.json"),
                                       help="An earlier run's timing: the longest path ahead starts first."),
          timing: Path = typer.Option(None, help="Write each stage's seconds and span here (JSON).")):
    """`dvc repro`, with the DAG's independent stages `--jobs` at a time (DVC's parallel stage execution)."""
    from genzoo.tools.repro import run, write_schedule

    schedule = run(list(targets or []), jobs, force, weights)
    print(f"{len(schedule.stages)} stages in {schedule.total_seconds:.0f} s, {jobs} at a time")
    if timing is not None:
        write_schedule(schedule, timing)


@app.command("dag")
@expected_errors
def dag(check: bool = typer.Option(False, "--check", help="Exit 1 if dvc.yaml is not what the code implies."),
        dvc_yaml: Path = typer.Option(Path("dvc.yaml"), help="The file to write or check."),
        params: Path = PARAMS):
    """Write dvc.yaml from the registry and the imports: every stage's deps are the files its code imports."""
    from genzoo.tools.dag import check_or_write
    check_or_write(dvc_yaml, params, check)


def _write_import_trace(folder: Path) -> None:
    """GENZOO_TRACE_IMPORTS=<folder>: record which genzoo files this command ran (the end-to-end test checks
    them against the stage's deps in dvc.yaml, the runtime twin of `genzoo dag`'s reading of the imports)."""
    import json
    import os
    import sys

    root = Path(__file__).resolve().parents[1]  # src/
    files = sorted(Path(module.__file__).resolve().relative_to(root.parent).as_posix()
                   for name, module in list(sys.modules.items())
                   if (name == "genzoo" or name.startswith("genzoo.")) and getattr(module, "__file__", None))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.json").write_text(json.dumps({"argv": sys.argv[1:], "files": files}))


def main() -> None:
    """The `genzoo` command. One that ends (well or with an error it reports) leaves without tearing the
    interpreter down: freeing torch's and mlflow's modules one by one took 1.2-2.4 s of every stage on a 2-core
    host, about what a tiny-profile stage spends training (docs/notes/cpu-timing.md). What a normal exit does
    that matters still happens first: other threads are joined, the exit handlers run, the streams are flushed."""
    import atexit
    import os

    if os.environ.get("GENZOO_TRACE_IMPORTS"):
        atexit.register(_write_import_trace, Path(os.environ["GENZOO_TRACE_IMPORTS"]))
    try:
        app()  # click ends every command, a failed one too, with SystemExit
    except SystemExit as done:
        _leave(done.code)
    _leave(0)


def _leave(code) -> None:
    """Exit as `sys.exit(code)` would, minus the interpreter's teardown (no file is left open by a stage: every
    write goes through genzoo.engine.io and is closed)."""
    import atexit
    import os
    import sys
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        status = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say to it
            pass
    os._exit(status)
