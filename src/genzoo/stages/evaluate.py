"""The `evaluate` stage: every trained generative model measured the same way, through the frozen evaluator.

The metric suite for each sampling model, beside the real-data floor (the same metric between real training and
real test digits, i.e. what a perfect model would score with this many samples):
- FD-evaluator and KID: Fréchet distance and kernel distance of the evaluator's penultimate features of
  `n_samples` samples against the test set (the evaluator stands in for Inception: "FD", not "FID").
- precision / recall (Kynkäänniemi et al. 2019) on the same features.
- mode coverage: the evaluator's class histogram of the samples.
- Parzen-window log-likelihood of test digits (Goodfellow et al. 2014), sigma chosen on validation digits.
- for likelihood models also the test ELBO and the test NLL (IWAE bound) on the fixed binarized test set (a
  partial run: on the same seeded random subset of it, as MNIST's test file is ordered).
A model whose samples are black-and-white draws (`binary_samples`: PixelCNN, PixelRNN) is compared with the fixed
binarization of the real images instead, beside a floor of its own (`real_test_binarized`): scored against grey
digits, binarizing alone would count as the model's error (real training digits, binarized, score far below the
grey ones there).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import time
from pathlib import Path

import torch

from genzoo.data.derived import not_applicable
from genzoo.data.loading import labelled_subset, load_meta, load_split, seeded_subset, subset_words
from genzoo.data.naming import naming
from genzoo.engine.errors import GenzooError
from genzoo.engine.io import read_json, write_text
from genzoo.engine.pictures import save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics
from genzoo.engine.training import describe_device, resolve_device
from genzoo.metrics.frechet import features, features_and_classes, frechet_distance, kernel_inception_distance
from genzoo.metrics.likelihood import test_elbo, test_nll
from genzoo.metrics.modes import class_histogram, mode_coverage
from genzoo.metrics.parzen import parzen_score
from genzoo.metrics.precision_recall import precision_recall
from genzoo.models.blocks import to_unit
from genzoo.models.registry import EVALUATOR, GENERATIVE, load_model
from genzoo.params import Params
from genzoo.stages.train import model_splits


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """Every registered generative model and the evaluator: this stage loads each one's saved weights."""
    return [EVALUATOR, *GENERATIVE]


@torch.no_grad()
def draw_samples(model, n: int, batch_size: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - i)) for i in range(0, n, batch_size)])


class Reference:
    """The real images every model is compared with, and their evaluator features, computed once. A model whose
    samples are black-and-white draws (`binary_samples`: PixelCNN, PixelRNN) is compared with the fixed
    binarization of the same real images, so that binarizing is not counted against it; the others with the grey
    images. The Parzen test images are a seeded random subset (MNIST's test file is ordered)."""

    def __init__(self, evaluator, test: dict, val: dict, params: Params):
        cfg = params.evaluate
        self.evaluator, self.cfg, self.seed = evaluator, cfg, params.run.seed
        self.test01 = to_unit(test["x"])
        self.test_features = features(evaluator, self.test01, cfg.batch_size)
        parzen_test = seeded_subset(test, cfg.parzen_test_points, self.seed)
        self.parzen_val = to_unit(val["x"][:cfg.parzen_val_points])
        self.parzen_test = to_unit(parzen_test["x"])
        self._binary_images = (test["xb"], val["xb"][:cfg.parzen_val_points], parzen_test["xb"])  # 0/1 uint8
        self._binary = None  # (test features, Parzen validation, Parzen test) of the binarization, when first asked

    def real(self, binary: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(test features, Parzen validation images, Parzen test images): grey, or their fixed binarization."""
        if not binary:
            return self.test_features, self.parzen_val, self.parzen_test
        if self._binary is None:
            test_b, val_b, parzen_b = (x.float() for x in self._binary_images)
            self._binary = (features(self.evaluator, test_b, self.cfg.batch_size), val_b, parzen_b)
        return self._binary

    def score(self, images01: torch.Tensor, num_classes: int, binary: bool = False) -> dict:
        """The sample metrics of `images01` (N, C, H, W) in [0, 1] against the real test images (their fixed
        binarization with `binary`)."""
        cfg = self.cfg
        test_features, parzen_val, parzen_test = self.real(binary)
        fake, classes = features_and_classes(self.evaluator, images01, cfg.batch_size)
        kid_mean, kid_std = kernel_inception_distance(test_features, fake, cfg.kid_subsets, cfg.kid_subset_size,
                                                      seed=self.seed)
        histogram = class_histogram(classes, num_classes)
        parzen = parzen_score(images01[:cfg.parzen_samples], parzen_val, parzen_test)
        return {"fd": frechet_distance(test_features, fake), "kid": kid_mean, "kid_std": kid_std,
                **precision_recall(test_features, fake, k=cfg.pr_k), **mode_coverage(histogram),
                **parzen, "histogram": [round(float(h), 5) for h in histogram],
                "reference": "binarized" if binary else "grey"}


def score_likelihood(model, test: dict[str, torch.Tensor], params: Params) -> dict:
    """The test ELBO and NLL of a model that declares a `likelihood` ({} for the others)."""
    if model.likelihood is None:
        return {}
    cfg, scores = params.evaluate, {}
    torch.manual_seed(params.run.seed)
    # a bound is costly (k passes per image): a partial run scores a seeded random subset, its ELBO the same one
    bounded = seeded_subset(test, cfg.iwae_images, params.run.seed)["xb"]
    if model.likelihood == "bound":
        scores["test_elbo"] = test_elbo(model, bounded, cfg.batch_size)
    exact = model.likelihood == "exact"  # autoregressive models: exact and cheap, all images
    images = test["xb"] if exact else bounded
    scores["nll_kind"] = "exact" if exact else "iwae"
    # the protocol a paper's number assumes (targets.yaml's coverage): one fixed draw of the training digits
    # (`binarization: static`) or a fresh one each step
    static = getattr(model.config, "binarization", "dynamic") == "static"
    scores["train_binarization"] = "fixed" if static else "dynamic"
    nll = test_nll(model, images, cfg.iwae_k, min(cfg.batch_size, 100))
    scores.update({f"test_{k}": v for k, v in nll.items()})
    return scores


def scoring_key(model_file: Path, evaluator_file: Path, params: Params, data_hash: str, device: torch.device) -> str:
    """What a model's sample and likelihood scores depend on: its weights, the evaluator's, the evaluate section, the
    sampling seed, the data and the device kind. evaluate reuses compare's scores of a run.seed model (the same file)
    only when their key is this one, so a number is measured once and never taken from a stale run."""
    digest = hashlib.sha256()
    for path in (model_file, evaluator_file):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps({"evaluate": dataclasses.asdict(params.evaluate), "seed": params.run.seed,
                              "data": data_hash, "device": device.type}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def sample_scores(model, samples: torch.Tensor | None, reference: Reference, test: dict, params: Params,
                  num_classes: int) -> dict:
    """The scores evaluate and compare both give a model: the sample metrics of `samples` (None for a model that
    does not sample) and the likelihood scores."""
    scores = reference.score(samples, num_classes, model.binary_samples) if samples is not None else {}
    scores.update(score_likelihood(model, test, params))
    return scores


def _compared(compared: dict | None, name: str, models: Path, params: Params, data_hash: str,
              device: torch.device) -> dict | None:
    """The compare stage's run.seed scores of models/<name>/model.pt, or None where compare.json holds none measured
    from this file, this evaluator, this evaluate section, seed, data and device kind (missing, stale, or a model
    compare does not run)."""
    rows = (compared or {}).get("runs", {}).get(name, {})
    row = rows.get(f"s{params.run.seed}", {}) if isinstance(rows, dict) else {}
    if not isinstance(row.get("shared_scores"), list) or row.get("scoring_key") != scoring_key(
            models / name / "model.pt", models / "evaluator" / "model.pt", params, data_hash, device):
        return None
    return {k: row[k] for k in row["shared_scores"]}


def evaluate_stage(params: Params, data: Path, models: Path, metrics: Path, derived: Path = Path("data/derived"),
                   only: list[str] | None = None, compared_file: Path | None = None) -> dict:
    """Score every generative model (or the `only` ones: a partial gpu run, pipeline/gpu_models.py) into
    `metrics/evaluate.json`. The compare stage's run.seed models (`compared_file`, default metrics/compare.json) are
    the same files scored the same way: their sample and likelihood scores are taken from there when the scoring
    key matches, so they are measured once."""
    unknown = sorted(set(only or []) - set(GENERATIVE))
    if unknown:
        raise GenzooError(f"evaluate: unknown model(s) {unknown}; known: {', '.join(GENERATIVE)}")
    device = resolve_device(params.engine.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # likelihoods are sums over 784 pixels: keep full fp32
    cfg = params.evaluate
    meta = load_meta(data)
    num_classes = len(meta["classes"])
    data_names = naming(meta)  # the protocol says "digits" on MNIST, and names another data set and its classes
    train, val, test = (load_split(data, split, device) for split in ("train", "val", "test"))
    evaluator = load_model(models / "evaluator" / "model.pt", device)
    info = provenance("evaluate", params, describe_device(device), data)
    compared_file = compared_file or metrics / "compare.json"
    compared = read_json(compared_file) if compared_file.exists() else None
    reference = Reference(evaluator, test, val, params)
    labelled = labelled_subset(train["y"], params.data.labelled_per_class, params.data.labelled_seed).to(device)
    # The floor: real training digits scored exactly like samples (as many of them as a model gets to draw).
    generator = torch.Generator(device="cpu").manual_seed(params.run.seed)
    subset = torch.randperm(len(train["x"]), generator=generator)[:cfg.n_samples].to(device)
    results = {"real_test": reference.score(to_unit(train["x"][subset]), num_classes), "models": {}}
    names = [n for n in GENERATIVE if only is None or n in only]
    # The cross-model figures the models declare (`comparison`), each drawn by the class that declares it.
    figures = {GENERATIVE[n].comparison: GENERATIVE[n] for n in names if GENERATIVE[n].comparison}
    loaded = {}  # models a cross-model figure needs
    tags = {k: info[k] for k in ("profile", "device", "commit")}
    with StageRun("evaluate", params, ["run", "evaluate"], tags) as run:
        for name in names:
            why = not_applicable(GENERATIVE[name].dataset, data_names)
            if why is not None:  # its train stage refused the data set (SimGAN's font digits on clothes)
                results["models"][name] = {"not_applicable": why}
                print(f"{name}: not applicable to {data_names.dataset}: {why}")
                continue
            began = time.perf_counter()
            model = load_model(models / name / "model.pt", device)
            scores = _compared(compared, name, models, params, info["data_hash"], device)
            origin = "compare.json" if scores is not None else "measured here"  # where its shared scores come from
            if scores is None:
                samples = draw_samples(model, cfg.n_samples, cfg.batch_size, params.run.seed) if model.samples else None
                scores = sample_scores(model, samples, reference, test, params, num_classes)
            torch.manual_seed(params.run.seed)
            if model.dataset is None:
                own = {"train": train, "val": val, "test": test, "labelled": labelled}
            else:  # a translation model is scored on its own derived set
                own = model_splits(type(model), data, derived, device)
            extra = model.extra_scores(own, evaluator)
            if set(extra) & set(scores):  # a model's own score may not overwrite a shared one under its name
                raise GenzooError(f"evaluate: {name}.extra_scores repeats {sorted(set(extra) & set(scores))}")
            scores.update(extra)
            results["models"][name] = {**scores, "scores_from": origin}
            if any(name in group for group in figures):
                loaded[name] = model
            numbers = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
            run.log_metrics(0, {f"{name}/{k}": v for k, v in numbers.items()})
            print(f"{name} ({time.perf_counter() - began:.1f} s): "  # the log says where the stage's time goes
                  + ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
        binary = sorted(n for n, s in results["models"].items() if s.get("reference") == "binarized")
        if binary:  # their floor: the same real training images, binarized as the test images they are held to
            results["real_test_binarized"] = reference.score(train["xb"][subset].float(), num_classes, binary=True)
        noun = data_names.noun
        of = "" if data_names.digits else f" of {data_names.describe()}"
        results["protocol"] = {
            "samples": f"{cfg.n_samples} samples per model against the {len(test['x'])} test {noun}{of}; the floor "
                       f"scores {cfg.n_samples} real training {noun} the same way"
                       + (f"; {', '.join(binary)} draw black-and-white images, so they are held to the fixed "
                          f"binarization of the same {noun} (their own floor)" if binary else ""),
            "features": "the frozen evaluator's penultimate layer (FD-evaluator, not Inception FID)",
            "kid": f"polynomial-kernel MMD, {cfg.kid_subsets} subsets of {cfg.kid_subset_size}",
            "precision_recall": f"k-NN manifolds, k={cfg.pr_k} (Kynkäänniemi et al. 2019)",
            "parzen": f"Gaussian window on {cfg.parzen_samples} samples, sigma chosen on {cfg.parzen_val_points} "
                      f"validation {noun}, mean log-likelihood of "
                      + f"{subset_words(cfg.parzen_test_points, len(test['x']))} test {noun} (nats)",
            "mode_coverage": "evaluator classes of the samples; a class is hit by at least 1%",
            "nll": f"IWAE bound, k={cfg.iwae_k}, and the ELBO on {subset_words(cfg.iwae_images, len(test['x']))}"
                   + f" test images of the fixed binarization (seed {params.data.binarize_seed})",
        }
        for group, model_cls in figures.items():
            if set(group) <= set(loaded):
                shown = model_splits(model_cls, data, derived, device)["test"]
                save_pictures(model_cls.comparison_pictures({n: loaded[n] for n in group}, shown),
                              metrics / "figures" / "comparisons")
        if not data_names.digits:  # the report names the classes from here (MNIST's file stays as it was)
            results["data"] = data_names.as_dict()
        results["provenance"] = info
        write_metrics(metrics / "evaluate.json", results)
        write_text(metrics / "plots" / "class_histogram.csv", _histogram_csv(results, meta["classes"]))
    return results


def _histogram_csv(results: dict, classes: list[str]) -> str:
    """Wide format (class, real_test, <model>...): one bar chart per source in `dvc plots show`."""
    sources = {"real_test": results["real_test"], **{k: s for k, s in results["models"].items() if "histogram" in s}}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", *sources])
    for i, name in enumerate(classes):
        writer.writerow([name, *(scores["histogram"][i] for scores in sources.values())])
    return buffer.getvalue()
