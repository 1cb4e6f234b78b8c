"""The `compare` stage: the seeds' GAN-vs-VAE table (VAE, GAN, DCGAN, EBGAN) redone with measured numbers.

Each model is trained at several seeds: the run.seed model is the train@<name> stage's own (reused, refused if
its saved config is not the current params section: a stale model would be compared under the wrong name), the
others are trained here exactly as train_stage trains them, only the seed differs, all of a model's seeds together
as copies in one fit() (genzoo.engine.copies: each as it would train alone; one CUDA graph on a GPU). Every model
is then measured with the evaluate stage's code (genzoo.stages.evaluate.Reference). The run.seed rows carry the
scoring key of what they measured (genzoo.stages.evaluate.scoring_key) and the names of their shared scores; the
evaluate stage, which runs after this one, takes those rows' scores instead of measuring them again:
- sharpness: FD-evaluator and KID, and a blur measure: the share of mid-grey pixels (0.1 < v < 0.9). Real MNIST
  digits are nearly binary (ink or paper, grey only on stroke edges); a blurry sample smears ink into grey, so
  its grey share rises above the real digits'. It needs no network, so it cannot be fooled by what the evaluator
  happens to ignore. (For the VAE the samples are its Bernoulli means, as in the evaluate stage.)
- likelihood: Parzen-window LL for all four (the GAN paper's protocol), the IWAE NLL bound where the model has
  `log_likelihood` (the VAE).
- modes: classes hit (>= 1 % of samples) and KL(class histogram || uniform), precision/recall.
- stability: the spread (std, min, max) of every number over the training seeds, and how many seeds miss a class.
- memorization: each of M samples' L2 distance to its nearest TRAINING digit, against the same distance for M
  unseen TEST digits (pixels in [0, 1], and evaluator features). median ratio < 1: samples sit closer to the
  training set than real unseen digits do; near-copy share: samples closer than the 1st percentile of the test
  digits' distances (by construction about 1 % of test digits are).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from pathlib import Path

import torch

from genzoo.data.loading import load_meta, load_split, subset_words
from genzoo.data.naming import naming
from genzoo.engine.copies import Copies, copy_of, for_each_copy
from genzoo.engine.errors import GenzooError
from genzoo.engine.io import load_torch, write_text
from genzoo.engine.pictures import figure_to_image, save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics
from genzoo.engine.training import describe_device, fit, resolve_device
from genzoo.metrics.frechet import features
from genzoo.models.blocks import to_unit
from genzoo.models.registry import GENERATIVE, build_model, load_model, save_model
from genzoo.params import Params
from genzoo.stages.evaluate import Reference, draw_samples, sample_scores, scoring_key
from genzoo.stages.train import attach_perceptual, checkpoint_dir, fingerprint, mode_monitor

CHUNK = 2048  # rows per side of one distance block: 2048 x 2048 floats = 16 MiB
GREY = (0.1, 0.9)  # a pixel strictly between these is "mid-grey"
NEAR_COPY_QUANTILE = 0.01
NOT_AGGREGATED = {"seed", "parzen_sigmas_tried", "test_images", "test_k", "resumed_from"}  # settings, not measurements


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry models this stage runs: `compare.models` as written in the params file, and the evaluator."""
    section = raw.get("compare") if isinstance(raw, dict) else None
    names = section.get("models") if isinstance(section, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GenzooError(f"compare.models: expected a list of model names, got {names!r}")
    return [*names, "evaluator"]


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, chunk: int = CHUNK
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's L2 distance to its nearest reference row and that row's index: (N,) float32, (N,) int64.

    Rows are flattened. Blocks of ‖q‖² + ‖r‖² − 2 q·r (a matmul on the queries' device) find the nearest row;
    its distance is then recomputed from the difference itself, so an exact copy gives exactly 0 (the expansion
    alone cancels to ~1e-3). Ties go to the lowest index, so the answer does not depend on `chunk`."""
    q = queries.flatten(1).float()
    r = reference.flatten(1).float().to(q.device)
    if len(r) == 0:
        raise GenzooError("nearest_distances: the reference set is empty")
    r_sq = r.square().sum(1)  # (R,)
    distances, indices = [], []
    for i in range(0, len(q), chunk):
        qc = q[i:i + chunk]  # (Bq, D)
        q_sq = qc.square().sum(1, keepdim=True)  # (Bq, 1)
        best = torch.full((len(qc),), math.inf, device=q.device)
        where = torch.zeros(len(qc), dtype=torch.long, device=q.device)
        for j in range(0, len(r), chunk):
            block = q_sq + r_sq[j:j + chunk] - 2 * qc @ r[j:j + chunk].T  # (Bq, Br) squared distances
            value, arg = block.min(1)  # the first minimum on ties
            better = value < best  # strict: an earlier block keeps a tie
            best = torch.where(better, value, best)
            where = torch.where(better, arg + j, where)
        distances.append((qc - r[where]).square().sum(1).sqrt())
        indices.append(where)
    return torch.cat(distances), torch.cat(indices)


def memorization_summary(sample_distances: torch.Tensor, test_distances: torch.Tensor,
                         quantile: float = NEAR_COPY_QUANTILE) -> dict[str, float]:
    """Samples' nearest-training-digit distances against unseen test digits' (same count, same space)."""
    s, t = sample_distances.double().cpu(), test_distances.double().cpu()
    threshold = float(torch.quantile(t, quantile))
    median_s, median_t = float(s.median()), float(t.median())
    return {"median_sample": median_s, "median_test": median_t,
            "ratio": median_s / median_t if median_t > 0 else math.inf,
            "near_copies": float((s <= threshold).double().mean()), "threshold": threshold}


def memorization(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, chunk: int = CHUNK,
                 quantile: float = NEAR_COPY_QUANTILE) -> dict[str, float]:
    """median ratio (< 1: samples closer to the training set than unseen digits are) and the share of samples
    closer than the `quantile` of the test digits' distances (near-copies); any space, rows flattened."""
    sample_distances, _ = nearest_distances(samples, train, chunk)
    test_distances, _ = nearest_distances(test, train, chunk)
    return memorization_summary(sample_distances, test_distances, quantile)


def grey_share(images01: torch.Tensor) -> float:
    """The blur measure: the share of pixels strictly between 0.1 and 0.9."""
    x = images01.float()
    return float(((x > GREY[0]) & (x < GREY[1])).double().mean())


def aggregate(rows: list[dict], num_classes: int) -> dict:
    """mean, std (over seeds, ddof=1; 0 for one seed), min, max and n of every number the rows share, and the
    count of seeds whose samples miss a class (a class below 1 % of the samples)."""
    out = {}
    keys = sorted({k for row in rows for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_AGGREGATED})
    for key in keys:
        values = torch.tensor([float(row[key]) for row in rows if isinstance(row.get(key), (int, float))],
                              dtype=torch.float64)
        if len(values) == 0:
            continue
        out[key] = {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0,
                    "min": float(values.min()), "max": float(values.max()), "n": len(values)}
    out["seeds"] = [row["seed"] for row in rows]
    out["seeds_missing_a_class"] = sum(1 for row in rows if row.get("classes_hit", num_classes) < num_classes)
    return out


def saved_model(path: Path, name: str, config, device) -> torch.nn.Module:
    """The train@ stage's model, refused when its saved config is not the current params section (stale)."""
    if not path.exists():
        raise GenzooError(f"{path}: no trained model here (run its train@{name} stage first: `dvc repro train@{name}`)")
    blob = load_torch(path)
    expected = dataclasses.asdict(config)
    if blob["name"] != name or blob["config"] != expected:
        changed = sorted(k for k in set(expected) | set(blob["config"]) if blob["config"].get(k) != expected.get(k))
        raise GenzooError(f"{path}: stale: it was trained with other `{name}` params (differs in "
                          f"{', '.join(changed) or 'the model name'}); run `dvc repro train@{name}` first")
    return load_model(path, device)


def compare_stage(params: Params, data: Path, models: Path, metrics: Path, checkpoints: Path | None = None) -> dict:
    device = resolve_device(params.engine.device)
    checkpoints = checkpoints or checkpoint_dir(models)
    torch.backends.cuda.matmul.allow_tf32 = False  # distances and likelihoods in full fp32, as in evaluate
    cfg, ecfg = params.compare, params.evaluate
    for name in cfg.models:
        if name not in GENERATIVE or not GENERATIVE[name].samples:
            raise GenzooError(f"compare.models: {name!r} is not a sampling model of the zoo")
    meta = load_meta(data)
    num_classes, image_shape = len(meta["classes"]), tuple(meta["image_shape"])
    names = naming(meta)  # "digits" on MNIST, "images" on another data set, in the texts below
    reused = {name: saved_model(models / name / "model.pt", name, params.model(name), device)  # refuse stale first
              for name in cfg.models if params.run.seed in cfg.seeds}
    train, val, test = (load_split(data, split, device) for split in ("train", "val", "test"))
    evaluator = load_model(models / "evaluator" / "model.pt", device)
    info = provenance("compare", params, describe_device(device), data)
    reference = Reference(evaluator, test, val, params)
    # Memorization's yardstick: M unseen test digits (a seeded subset) and the whole training split.
    train01 = to_unit(train["x"])
    train_features = features(evaluator, train01, ecfg.batch_size)
    m = min(cfg.memorization_samples, len(test["x"]))
    pick = torch.randperm(len(test["x"]), generator=torch.Generator().manual_seed(params.run.seed))[:m].to(device)
    test_pixels, test_nearest = nearest_distances(reference.test01[pick], train01)
    test_feats, _ = nearest_distances(reference.test_features[pick], train_features)
    real = {"grey_share": grey_share(reference.test01), "memorization_digits": m,
            "pixel_median_distance": float(test_pixels.median()), "feature_median_distance": float(test_feats.median()),
            "pixel_near_copy_threshold": float(torch.quantile(test_pixels.double().cpu(), NEAR_COPY_QUANTILE)),
            "feature_near_copy_threshold": float(torch.quantile(test_feats.double().cpu(), NEAR_COPY_QUANTILE))}
    runs: dict[str, dict[str, dict]] = {}
    grids = {}
    with StageRun("compare", params, ["run", "engine", "evaluate", "compare", *cfg.models],
                  {k: info[k] for k in ("profile", "device", "commit", "dirty", "data_hash")}) as run:
        for name in cfg.models:
            config = params.model(name)
            runs[name], shown, pairs = {}, {}, []
            trained = _train(name, config, [s for s in cfg.seeds if s != params.run.seed], params, models,
                             checkpoints, train, val, image_shape, num_classes, meta["data_hash"], device, run)
            for seed in cfg.seeds:
                if seed == params.run.seed:
                    model, row = reused[name], {"source": f"train@{name}", "train_seconds": None}
                else:
                    model, row = trained.pop(seed)
                row = {"model": name, "seed": seed, **row}
                began = time.perf_counter()
                samples = draw_samples(model, cfg.n_samples, ecfg.batch_size, params.run.seed)
                scores = sample_scores(model, samples, reference, test, params, num_classes)
                row.update(scores)
                if seed == params.run.seed and cfg.n_samples == ecfg.n_samples:  # evaluate's own measurement
                    row["scoring_key"] = scoring_key(models / name / "model.pt", models / "evaluator" / "model.pt",
                                                     params, info["data_hash"], device)
                    row["shared_scores"] = sorted(scores)
                row["grey_share"] = grey_share(samples)
                row["grey_ratio"] = row["grey_share"] / max(real["grey_share"], 1e-12)
                row["misses_a_class"] = row["classes_hit"] < num_classes
                mem = samples[:m]
                pixel_d, pixel_i = nearest_distances(mem, train01)
                feature_d, _ = nearest_distances(features(evaluator, mem, ecfg.batch_size), train_features)
                row.update({f"mem_pixel_{k}": v for k, v in memorization_summary(pixel_d, test_pixels).items()})
                row.update({f"mem_feature_{k}": v for k, v in memorization_summary(feature_d, test_feats).items()})
                row["measure_seconds"] = round(time.perf_counter() - began, 2)
                runs[name][f"s{seed}"] = row
                closest = pixel_d.argsort()[:cfg.figure_pairs]  # argsort is stable on ties: deterministic
                pairs.append((f"seed {seed}: closest samples | nearest training {names.one} "
                              f"(median ratio {row['mem_pixel_ratio']:.2f})",
                              _interleave(mem[closest], train01[pixel_i[closest]]), pixel_d[closest]))
                shown[f"seed {seed} ({row['source']})"] = samples[:64]
                numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                run.log_metrics(0, {f"{name}/s{seed}/{k}": float(v) for k, v in numbers.items()})
                print(f"{name} seed {seed}: " + ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
                del model
            closest = test_pixels.argsort()[:cfg.figure_pairs]
            pairs.append((f"unseen test {names.noun} | nearest training {names.one} (the yardstick)",
                          _interleave(reference.test01[pick][closest], train01[test_nearest[closest]]),
                          test_pixels[closest]))
            grids[f"{name}_samples"] = (_panels(f"{name}: 64 samples per training seed", shown, nrow=8), 1)
            grids[f"{name}_memorization"] = (_pair_figure(f"{name}: memorization (L2 in pixels)", pairs,
                                                          cfg.figure_pairs), 1)
        aggregates = {name: aggregate(list(runs[name].values()), num_classes) for name in cfg.models}
        for name, agg in aggregates.items():
            run.log_metrics(0, {f"{name}/{stat}/{k}": v[stat] for k, v in agg.items() if isinstance(v, dict)
                                for stat in ("mean", "std")})
        results = {"models": cfg.models, "seeds": cfg.seeds, "runs": runs, "aggregates": aggregates,
                   "real_test": real,
                   "protocol": _protocol(params, m, len(test["x"]), len(train["x"]), names.noun),
                   "provenance": info}
        write_metrics(metrics / "compare.json", results)
        write_text(metrics / "plots" / "compare.csv", _csv(runs))
        figures = metrics / "figures" / "compare"
        save_pictures(grids, figures)
        run.log_artifacts(figures, "figures")
    return results


def _train(name, config, seeds, params, models, checkpoints, train, val, image_shape, num_classes, data_hash,
           device, run) -> dict[int, tuple[torch.nn.Module, dict]]:
    """train_stage's fit at other seeds, the seeds together as copies in one fit; each model is saved to
    models/compare/<name>_s<seed>/model.pt and measured as loaded back from there (eval mode), exactly as the file
    holds it. {seed: (model, its row's training fields)}."""
    if not seeds:
        return {}
    built = [build_model(name, config, image_shape, num_classes, seed) for seed in seeds]
    for model in built:
        attach_perceptual(name, model, models, device)
    copies = Copies(built, seeds)
    monitors = [mode_monitor(model, params, models, device, num_classes) for model in built]
    seeded = dataclasses.replace(params, run=dataclasses.replace(params.run, seed=seeds[0]))
    checkpoint = checkpoints / f"compare_{name}_s{'_'.join(map(str, seeds))}.pt"

    def log(step: int, row: dict) -> None:  # "train/<i>/loss" -> "<name>/s<seed>/train/loss"
        named = {}
        for key, value in row.items():
            i, metric = copy_of(key)
            named[f"{name}/{metric}" if i is None else f"{name}/s{seeds[i]}/{metric}"] = value
        run.log_metrics(step, named)

    result = fit(copies, train, config=config, engine=params.engine, seed=seeds[0], val=val, checkpoint=checkpoint,
                 fingerprint=f"{fingerprint(name, config, seeded, data_hash)}-seeds{seeds}", on_log=log,
                 monitor=for_each_copy(monitors) if all(monitors) else None, label=name)
    out = {}
    for seed, model in zip(seeds, built):
        path = save_model(model, name, models / "compare" / f"{name}_s{seed}" / "model.pt")
        out[seed] = (load_model(path, device), {"source": "trained here", "train_seconds": round(result.seconds, 2),
                                                "trained_together": len(seeds), "steps": result.steps,
                                                "resumed_from": result.resumed_from})
    checkpoint.unlink(missing_ok=True)
    return out


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a0 b0 a1 b1 ...: (2N, C, H, W)."""
    return torch.stack([a, b], dim=1).flatten(0, 1)


def _grid(images: torch.Tensor, nrow: int):
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=0.5).permute(1, 2, 0)


def _panels(title: str, panels: dict[str, torch.Tensor], nrow: int) -> torch.Tensor:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (label, images) in zip(axes[0], panels.items()):
        ax.imshow(_grid(images, nrow).numpy())
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_to_image(fig)


def _pair_figure(title: str, rows: list[tuple[str, torch.Tensor, torch.Tensor]], pairs: int) -> torch.Tensor:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(0.6 * 2 * pairs + 0.5, 1.25 * len(rows) + 0.4), squeeze=False)
    for ax, (label, images, distances) in zip(axes[:, 0], rows):
        ax.imshow(_grid(images, 2 * pairs).numpy())
        ax.set_title(f"{label}; L2 {', '.join(f'{d:.1f}' for d in distances.tolist())}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_to_image(fig)


def _csv(runs: dict[str, dict[str, dict]]) -> str:
    """One row per model and seed (x = seed in `dvc plots`), every number as a column."""
    rows = [row for by_seed in runs.values() for row in by_seed.values()]
    columns = ["model", "seed", "source"] + sorted({k for row in rows for k, v in row.items()
                                                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    and k != "seed"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _protocol(params: Params, m: int, n_test: int, n_train: int, noun: str = "digits") -> dict[str, str]:
    one = noun[:-1]  # "digits" -> "digit"
    cfg, ecfg = params.compare, params.evaluate
    return {
        "seeds": f"training seeds {cfg.seeds}; seed {params.run.seed} is the train@<model> stage's model, the others "
                 "are trained here with the same params section and engine (models/compare/<model>_s<seed>)",
        "samples": f"{cfg.n_samples} samples per model and seed, drawn with sampling seed {params.run.seed} (the "
                   "same noise for every training seed: the spread is the training seeds')",
        "sharpness": f"FD-evaluator and KID ({ecfg.kid_subsets} subsets of {ecfg.kid_subset_size}) against the "
                     f"{n_test} test {noun}, the frozen evaluator's penultimate features, as in evaluate.json",
        "blur": f"grey_share: share of sample pixels in ({GREY[0]}, {GREY[1]}); real_test.grey_share is the test "
                f"{noun}' share; grey_ratio = samples / real (1 = as crisp as real {noun}, > 1 = blurrier)",
        "likelihood": f"parzen_ll: Gaussian window on {ecfg.parzen_samples} samples, sigma chosen on "
                      f"{ecfg.parzen_val_points} validation {noun}, "
                      f"{subset_words(ecfg.parzen_test_points, n_test)} test {noun} (as in evaluate.json) (nats); "
                      f"test_nll: IWAE bound k={ecfg.iwae_k} where the model has a likelihood",
        "modes": "classes_hit: evaluator classes with >= 1% of the samples; kl_to_uniform in nats; "
                 f"precision/recall: k-NN manifolds, k={ecfg.pr_k}",
        "stability": "aggregates: mean, std (ddof=1 over seeds), min, max of each number; seeds_missing_a_class "
                     "counts seeds whose samples hit fewer than all classes",
        "memorization": f"the first {m} samples and {m} test {noun} (seeded subset), each one's L2 distance to its "
                        f"nearest of the {n_train} training {noun}, in pixels ([0, 1]) and in evaluator features; "
                        "ratio = median(samples) / median(test): < 1 means samples sit closer to the training set "
                        f"than unseen {noun} do; near_copies = share of samples at or below the test distances' "
                        f"{NEAR_COPY_QUANTILE:.0%} quantile (threshold)",
        "figures": f"figures/compare/<model>_samples.png: 64 samples per seed; <model>_memorization.png: the "
                   f"{cfg.figure_pairs} samples closest to a training {one}, beside it, per seed, and the closest "
                   f"test {noun} for scale",
    }
