"""`genzoo`: the commands the DVC stages run. Options here are paths and modes only; every hyperparameter
lives in params.yaml (flags would bypass `dvc params diff`)."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from genzoo.errors import GenzooError
from genzoo.params import PARAMS_FILE, load_params

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train and measure the classic generative models (see README.md).")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and prepare the data sets.")
app.add_typer(data_app, name="data")

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


@data_app.command("download")
@expected_errors
def data_download(params: Path = PARAMS, out: Path = typer.Option(Path("data/raw")),
                  offline: bool = typer.Option(False, help="Use only the local mirror folders.")):
    """Fetch the IDX files of `data.dataset` (local mirror first, then the official mirrors); check SHA-256."""
    from genzoo.stages import download_stage
    download_stage(load_params(params), out, offline)


@data_app.command("preprocess")
@expected_errors
def data_preprocess(params: Path = PARAMS, raw: Path = typer.Option(Path("data/raw")), out: Path = DATA):
    """Validate the IDX files and write uint8 tensors, the seeded split and the fixed test binarization."""
    from genzoo.stages import preprocess_stage
    preprocess_stage(load_params(params), raw, out)


@data_app.command("derive")
@expected_errors
def data_derive(params: Path = PARAMS, data: Path = DATA, out: Path = DERIVED,
                figures: Path = typer.Option(Path("metrics/figures/derived"), help="Preview grids.")):
    """Build the derived sets of the translation models (paired, superres, unpaired, multidomain, synthetic)."""
    from genzoo.stages import derive_stage
    derive_stage(load_params(params), data, out, figures)


@data_app.command("strokes")
@expected_errors
def data_strokes(params: Path = PARAMS, data: Path = DATA, out: Path = typer.Option(Path("data/strokes")),
                 raw: Path = typer.Option(Path("data/raw/quickdraw"), help="Where QuickDraw files are fetched to."),
                 checksums: Path = typer.Option(Path("data/quickdraw.sha256.json"),
                                                help="QuickDraw's SHA-256 record (written on first download)."),
                 figures: Path = typer.Option(Path("metrics/figures/strokes"), help="Preview grid.")):
    """Sketch-RNN's stroke-5 sequences: traced from MNIST skeletons, or QuickDraw's files (`strokes.source`)."""
    from genzoo.data.download import mirror_folders
    from genzoo.data.strokes import make_strokes, preview
    from genzoo.io import write_json
    from genzoo.pictures import save_pictures
    p = load_params(params)
    cfg = p.strokes
    meta = make_strokes(cfg.source, cfg.categories, cfg.per_category, cfg.max_len, cfg.epsilon, data, out, raw,
                        mirror_folders(p.data.mirror), checksums)
    if not checksums.exists():  # a DVC output: MNIST strokes download nothing, so the record starts empty
        write_json(checksums, {})
    save_pictures(preview(out), figures)
    print(f"strokes ({cfg.source}) in {out}: {meta['counts']}")


@app.command()
@expected_errors
def train(model: str = typer.Argument(..., help="A registered model, or `evaluator`."), params: Path = PARAMS,
          data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS, derived: Path = DERIVED):
    """Train one model with the shared engine (resumes from its checkpoint when one fits)."""
    from genzoo.models import GENERATIVE
    from genzoo.stages import train_stage
    loaded = load_params(params)
    trainable = ["evaluator", *GENERATIVE]
    if model not in trainable:
        raise GenzooError(f"unknown model {model!r}; `genzoo train` fits: {', '.join(trainable)} "
                          "(Triple-GAN has its own command: `genzoo triplegan`)")
    train_stage(model, loaded, data, models, metrics, derived)


@app.command()
@expected_errors
def saturation(params: Path = PARAMS, data: Path = DATA, metrics: Path = METRICS):
    """Train a GAN briefly with each generator loss; record G's gradient norm (minimax saturates early)."""
    from genzoo.saturation import saturation_stage
    saturation_stage(load_params(params), data, metrics)


@app.command()
@expected_errors
def toy(params: Path = PARAMS, metrics: Path = METRICS):
    """The GAN paper's theory on a 1-D mixture: D vs D*, the value of the game vs -log 4, saturation."""
    from genzoo.toy import gan_toy_stage
    gan_toy_stage(load_params(params), metrics)


@app.command()
@expected_errors
def anogan(params: Path = PARAMS, data: Path = DATA, models: Path = typer.Option(Path("models/anogan")),
           metrics: Path = METRICS):
    """AnoGAN (Schlegl et al. 2017): one-class GANs, batched latent inversion of the test set, AUROC per class."""
    from genzoo.anogan import anogan_stage
    anogan_stage(load_params(params), data, models, metrics)


@app.command()
@expected_errors
def triplegan(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS):
    """Triple-GAN (Li et al. 2017) with the shared 100 labels, one run per seed, beside C trained on the labels alone."""
    from genzoo.triplegan import triplegan_stage
    triplegan_stage(load_params(params), data, models, metrics)


@app.command()
@expected_errors
def compare(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS):
    """The seeds' GAN-vs-VAE table measured: sharpness, likelihood, modes, spread over seeds, memorization."""
    from genzoo.compare import compare_stage
    compare_stage(load_params(params), data, models, metrics)


@app.command()
@expected_errors
def evaluate(params: Path = PARAMS, data: Path = DATA, models: Path = MODELS, metrics: Path = METRICS,
             derived: Path = DERIVED,
             only: list[str] = typer.Option([], "--only", help="Score only these models (default: every one).")):
    """Measure every trained generative model through the frozen evaluator."""
    from genzoo.evaluate import evaluate_stage
    evaluate_stage(load_params(params), data, models, metrics, derived, only or None)


@app.command()
@expected_errors
def report(params: Path = PARAMS, metrics: Path = METRICS, readme: Path = typer.Option(Path("README.md"))):
    """Render metrics/ into the README's results section and metrics/report.html."""
    from genzoo.report import report_stage
    report_stage(load_params(params), metrics, readme)


@app.command()
@expected_errors
def bench(model: str = typer.Option("vae", help="A registered model."), params: Path = PARAMS,
          data: Path = DATA, steps: int = typer.Option(300, help="Timed steps (after warm-up)."),
          batch_size: list[int] = typer.Option([], "--batch-size", help="Batch sizes to time (default: params)."),
          out: Path = typer.Option(None, help="Also write the results as JSON here."),
          compare_eager: bool = typer.Option(False, help="Also time plain eager steps (no CUDA graphs).")):
    """Time training steps of one model on this machine: steps/s and seconds per epoch."""
    from genzoo.bench import bench_stage
    bench_stage(model, load_params(params), data, steps, batch_size, out, compare_eager)


def main() -> None:
    app()
