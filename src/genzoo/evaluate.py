"""The `evaluate` stage: every trained generative model measured the same way, through the frozen evaluator.

For now: mode coverage of `evaluate.n_samples` samples (the evaluator's class histogram), test ELBO and the test
NLL bound for likelihood models, and the same coverage measured on real test digits as the floor to compare with.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from genzoo.data.loading import load_meta, load_split
from genzoo.io import write_text
from genzoo.metrics.likelihood import test_elbo, test_nll
from genzoo.metrics.modes import class_histogram, mode_coverage
from genzoo.models import GENERATIVE, load_model
from genzoo.models.blocks import to_unit
from genzoo.params import Params
from genzoo.tracking import StageRun, provenance, write_metrics
from genzoo.training import describe_device, resolve_device


@torch.no_grad()
def predict(evaluator, images01: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([evaluator.predict(images01[i:i + batch_size]) for i in range(0, len(images01), batch_size)])


@torch.no_grad()
def score_model(model, evaluator, test: dict[str, torch.Tensor], params: Params, num_classes: int) -> dict:
    cfg = params.evaluate
    torch.manual_seed(params.run.seed)
    samples = torch.cat([model.sample(min(cfg.batch_size, cfg.n_samples - i))
                         for i in range(0, cfg.n_samples, cfg.batch_size)])
    histogram = class_histogram(predict(evaluator, samples, cfg.batch_size), num_classes)
    scores = {**mode_coverage(histogram), "histogram": [round(float(h), 5) for h in histogram]}
    if hasattr(model, "elbo"):
        scores["test_elbo"] = test_elbo(model, test["xb"], cfg.batch_size)
    if hasattr(model, "log_likelihood"):
        images = test["xb"] if cfg.iwae_images == 0 else test["xb"][:cfg.iwae_images]
        nll_batch = max(1, min(cfg.batch_size, 100))
        scores.update({f"test_{k}": v for k, v in test_nll(model, images, cfg.iwae_k, nll_batch).items()})
    return scores


def evaluate_stage(params: Params, data: Path, models: Path, metrics: Path) -> dict:
    device = resolve_device(params.engine.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # likelihoods are sums over 784 pixels: keep full fp32
    meta = load_meta(data)
    num_classes = len(meta["classes"])
    test = load_split(data, "test", device)
    evaluator = load_model(models / "evaluator" / "model.pt", device)
    info = provenance("evaluate", params, describe_device(device), data)
    real = class_histogram(predict(evaluator, to_unit(test["x"]), params.evaluate.batch_size), num_classes)
    results = {"real_test": {**mode_coverage(real), "histogram": [round(float(h), 5) for h in real]}, "models": {}}
    with StageRun("evaluate", params, ["run", "evaluate"], {k: info[k] for k in ("profile", "device", "commit")}) as run:
        for name in GENERATIVE:
            path = models / name / "model.pt"
            scores = score_model(load_model(path, device), evaluator, test, params, num_classes)
            results["models"][name] = scores
            run.log_metrics(0, {f"{name}/{k}": v for k, v in scores.items() if isinstance(v, (int, float))})
            print(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in scores.items() if isinstance(v, (int, float))))
        results["protocol"] = {
            "mode_coverage": f"evaluator classes of {params.evaluate.n_samples} samples; hit = at least 1%",
            "nll": f"IWAE bound, k={params.evaluate.iwae_k}, on "
                   + (f"the first {params.evaluate.iwae_images}" if params.evaluate.iwae_images else "all")
                   + f" test images of the fixed binarization (seed {params.data.binarize_seed})",
        }
        results["provenance"] = info
        write_metrics(metrics / "evaluate.json", results)
        write_text(metrics / "plots" / "class_histogram.csv", _histogram_csv(results, meta["classes"]))
    return results


def _histogram_csv(results: dict, classes: list[str]) -> str:
    """Long format (source, class, fraction): one bar chart per model in `dvc plots show`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "class", "fraction"])
    sources = {"real_test": results["real_test"], **results["models"]}
    for source, scores in sources.items():
        writer.writerows([source, c, f] for c, f in zip(classes, scores["histogram"]))
    return buffer.getvalue()
