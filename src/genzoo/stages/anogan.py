"""The `anogan` stage: anomaly detection by latent inversion — Schlegl, Seeböck, Waldstein, Schmidt-Erfurth &
Langs 2017, "Unsupervised Anomaly Detection with Generative Adversarial Networks to Guide Marker Discovery"
(IPMI 2017), scored with the one-vs-rest protocol of Ruff et al. 2018, "Deep One-Class Classification" (ICML).

For each normal class c a DCGAN (Radford et al. 2016) learns the training digits of class c only (the classes'
models train together as copies in one program, each on its own class for the same number of updates). Every test
image x is inverted: z* = argmin_z (1 - λ)·R(z) + λ·D(z) by Adam on z, with the residual R = Σ|x - G(z)| (L1,
as in the paper) and the discrimination loss D = Σ|f(x) - f(G(z))| on the discriminator's intermediate features
f (the paper's feature matching); the anomaly score is that loss at z*. The whole test set is inverted at once
(chunked only by memory). AUROC over the test set, anomaly = label ≠ c, per class and averaged. Beside it, on the
same split: the negative ELBO of a VAE trained on class c and the reconstruction error of an autoencoder trained
on class c, both on the fixed test binarization "xb" (nats per image).

Why f uses fixed BatchNorm statistics: genzoo's DCGAN discriminator normalizes its second conv layer with the
statistics of the batch in hand (no running averages). Used as it is, an image's features — and so its z* and
its score — would depend on which other test images share its chunk (a batch of mixed digits normalizes
differently from the all-real, one-class batches D saw in training; a single image would be normalized by its
own spatial statistics). `frozen_features` instead fixes that layer's mean and variance to those of the class-c
training images: the statistics D's real batches had during training, now a per-image function.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import time
from pathlib import Path

import torch
from torch import nn

from genzoo.data.loading import load_meta, load_split, seeded_subset
from genzoo.engine.copies import Copies, own_sets_as_one
from genzoo.engine.io import write_text
from genzoo.engine.pictures import save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics
from genzoo.engine.training import autocast, describe_device, fit, resolve_device
from genzoo.metrics.auroc import auroc
from genzoo.models.blocks import to_unit
from genzoo.models.inversion import invert
from genzoo.models.registry import build_model, save_model
from genzoo.params import AnoganParams, Params

METHODS = ("anogan", "vae", "autoencoder")


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry models whose code and params sections this stage runs (the one-class DCGAN and baselines)."""
    return ["dcgan", "vae", "autoencoder"]
ANCHORS = {"anogan (Schlegl et al. 2017, as reported by Ruff et al. 2018)": 0.913,
           "deep_svdd (Ruff et al. 2018)": 0.948}  # mean AUROC over the ten MNIST classes
SCORE_BATCH = 1000  # images scored at once by the VAE and the autoencoder



# ---------------------------------------------------------------- data

def one_class(split: dict[str, torch.Tensor], c: int) -> dict[str, torch.Tensor]:
    """The rows of class c only ("x", "y"): a one-class model's training set."""
    keep = split["y"] == c
    return {"x": split["x"][keep], "y": split["y"][keep]}


# ---------------------------------------------------------------- AnoGAN scoring

class Features(nn.Module):
    """f(x01): the DCGAN discriminator's conv stack (everything before its final Linear) -> (B, F) flattened
    features, with every batch-statistics BatchNorm replaced by one with fixed statistics."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.layers(x01 * 2 - 1)  # D works in [-1, 1], like dcgan.Model.criticize


@torch.no_grad()
def frozen_features(model: nn.Module, reference01: torch.Tensor, chunk: int = SCORE_BATCH) -> Features:
    """D's features with each batch-statistics BatchNorm fixed to the exact mean and (biased) variance of its
    input over `reference01` (the class-c training images), so one image's features ignore its batch-mates."""
    layers = copy.deepcopy(model.disc[:-1]).eval()
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and not layer.track_running_stats:
            total = total_sq = 0.0
            count = 0
            for start in range(0, len(reference01), chunk):
                h = layers[:i](reference01[start:start + chunk] * 2 - 1).double()  # (B, C, H, W)
                dims = [0, *range(2, h.ndim)]
                total, total_sq = total + h.sum(dims), total_sq + h.pow(2).sum(dims)
                count += h.numel() // h.shape[1]
            mean = total / count
            fixed = type(layer)(layer.num_features, eps=layer.eps, affine=layer.affine, track_running_stats=True)
            if layer.affine:
                fixed.weight.copy_(layer.weight)
                fixed.bias.copy_(layer.bias)
            fixed.running_mean.copy_(mean)
            fixed.running_var.copy_((total_sq / count - mean.pow(2)).clamp(min=0))
            layers[i] = fixed.to(reference01.device).eval()
    layers.requires_grad_(False)
    return Features(layers).eval()


class AnoganLoss:
    """Per-image (1 - λ)·Σ|x - G(z)| + λ·Σ|f(x) - f(G(z))| for `inversion.invert`: (generated, target) -> (B,).
    f(target) is computed once per target batch (invert passes the same tensor at every step)."""

    def __init__(self, features: nn.Module, lam: float):
        self.features, self.lam = features, lam
        self._target: torch.Tensor | None = None
        self._target_features: torch.Tensor | None = None

    def __call__(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._target is not target:
            with torch.no_grad():
                self._target_features = self.features(target).float()
            self._target = target
        residual = (target - generated.float()).abs().flatten(1).sum(1)  # (B,)
        discrimination = (self._target_features - self.features(generated).float()).abs().flatten(1).sum(1)
        return (1 - self.lam) * residual + self.lam * discrimination


def initial_codes(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    """z0 (n, L) drawn from the model's prior with a seeded CPU generator: image i starts from the same code
    however the set is chunked."""
    gen = torch.Generator().manual_seed(seed)
    if model.noise_bounds is None:
        return torch.randn(n, model.config.noise_dim, generator=gen)
    low, high = model.noise_bounds
    return torch.rand(n, model.config.noise_dim, generator=gen) * (high - low) + low


def anogan_scores(model: nn.Module, features: nn.Module, images01: torch.Tensor, *, steps: int, lr: float,
                  lam: float, chunk: int, seed: int, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Invert every image (chunk by chunk) and score it: returns (z* (N, L), anomaly score (N,)). `model` must
    be in eval mode (G's BatchNorm then uses its running statistics, a per-image map)."""
    device = images01.device

    def generate(z: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return model.generate(z).float()

    z0 = initial_codes(model, len(images01), seed)
    codes, scores = [], []
    for start in range(0, len(images01), chunk):
        x = images01[start:start + chunk]
        z, score = invert(generate, x, z0[start:start + chunk].to(device), steps, lr, model.noise_bounds,
                          loss=AnoganLoss(features, lam))
        codes.append(z)
        scores.append(score)
    return torch.cat(codes), torch.cat(scores)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_image_seconds(model: nn.Module, features: nn.Module, images01: torch.Tensor, *, steps: int, lr: float,
                         lam: float, seed: int, precision: str = "fp32") -> float:
    """Mean seconds per image when images are inverted one at a time (the loop batching replaces)."""
    _sync(images01.device)
    began = time.perf_counter()
    for i in range(len(images01)):
        anogan_scores(model, features, images01[i:i + 1], steps=steps, lr=lr, lam=lam, chunk=1, seed=seed + i,
                      precision=precision)
    _sync(images01.device)
    return (time.perf_counter() - began) / max(len(images01), 1)


def bench_inversion(model: nn.Module, features: nn.Module, images01: torch.Tensor, *, steps: int, lr: float,
                    lam: float, chunk: int, single: int, seed: int = 0, precision: str = "fp32") -> dict:
    """Seconds to invert all `images01` batched (chunks of `chunk`) at `steps` steps, against a loop over single
    images timed on the first `single` of them and extrapolated to all; the ratio is the speed-up."""
    _sync(images01.device)
    began = time.perf_counter()
    anogan_scores(model, features, images01, steps=steps, lr=lr, lam=lam, chunk=chunk, seed=seed,
                  precision=precision)
    _sync(images01.device)
    batched = time.perf_counter() - began
    result = {"images": len(images01), "steps": steps, "chunk": chunk, "batched_s": batched,
              "device": describe_device(images01.device)}
    if single:
        per_image = single_image_seconds(model, features, images01[:single], steps=steps, lr=lr, lam=lam,
                                         seed=seed, precision=precision)
        result.update(single_images=min(single, len(images01)), single_per_image_s=per_image,
                      single_extrapolated_s=per_image * len(images01),
                      speedup=per_image * len(images01) / max(batched, 1e-9))
    return result


# ---------------------------------------------------------------- baselines

@torch.no_grad()
def vae_scores(model: nn.Module, xb: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """-ELBO (N,) in nats on binary images, averaged over `samples` draws of z ~ q(z|x) (seeded)."""
    with torch.random.fork_rng(devices=[xb.device] if xb.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = []
        for start in range(0, len(xb), SCORE_BATCH):
            batch = xb[start:start + SCORE_BATCH]
            out.append(-torch.stack([model.elbo(batch)["elbo"] for _ in range(samples)]).mean(0))
    return torch.cat(out)


@torch.no_grad()
def autoencoder_scores(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """Reconstruction error -log p(xb | code(xb)) (N,) in nats on binary images."""
    return torch.cat([model.bce(xb[start:start + SCORE_BATCH]) for start in range(0, len(xb), SCORE_BATCH)])


# ---------------------------------------------------------------- training and pictures

def one_class_config(config, steps: int):
    """A section's config for a one-class run of `steps` updates: warm-ups are sized for the full set, so keep
    them within the run."""
    if getattr(config, "kl_warmup_steps", 0):
        config = dataclasses.replace(config, kl_warmup_steps=min(config.kl_warmup_steps, steps // 4))
    return config


def train_one_class_together(name: str, config, normals: list[dict[str, torch.Tensor]], params: Params,
                             image_shape, num_classes: int, seeds: list[int], steps: int
                             ) -> tuple[list[nn.Module], float]:
    """One fresh `name` model per class, fitted on its class for `steps` updates, all at once: the models train as
    copies in one program (genzoo.engine.copies), each with its own seed — on a CPU, the very models trained apart
    (tested).
    Returns (models in eval mode, seconds for all of them)."""
    config = one_class_config(config, steps)
    copies = Copies([build_model(name, config, image_shape, num_classes, seed) for seed in seeds], seeds)
    result = fit(copies, own_sets_as_one(normals), config=config, engine=params.engine, seed=seeds[0],
                 progress=False, steps=steps, label=f"anogan {name}")
    return [model.eval() for model in copies.copies], result.seconds


@torch.no_grad()
def figure(model: nn.Module, images01: torch.Tensor, z: torch.Tensor, labels: torch.Tensor, c: int,
           n: int) -> torch.Tensor:
    """The paper's figure: rows of queries, G(z*), residual |x - G(z*)|, for n normal then n anomalous test
    digits (the anomalous ones spread over the other classes). (6n, C, H, W) in [0, 1], shown with nrow = n."""
    normal = (labels == c).nonzero().flatten()[:n]
    others = [(labels == k).nonzero().flatten() for k in labels.unique().tolist() if k != c]
    spread = [i for column in itertools.zip_longest(*others) for i in column if i is not None]  # round robin
    anomalous = torch.stack(spread[:n]) if spread else normal[:0]
    rows = []
    for picked in (normal, anomalous):
        x = images01[picked]
        g = model.generate(z[picked]).float()
        rows += [x, g, (x - g).abs()]
    return torch.cat(rows)


def write_table(path: Path, rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["class", *METHODS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


# ---------------------------------------------------------------- the stage

def anogan_stage(params: Params, data: Path, models: Path, metrics: Path) -> dict:
    cfg: AnoganParams = params.anogan
    device = resolve_device(params.engine.device)
    meta = load_meta(data)
    image_shape, num_classes = tuple(meta["image_shape"]), len(meta["classes"])
    train = load_split(data, "train")
    test = seeded_subset(load_split(data, "test"), cfg.test_images, params.run.seed)
    bad = [c for c in cfg.classes if c >= num_classes or not (train["y"] == c).any()]
    if bad:
        raise ValueError(f"anogan.classes: {bad} not among the training labels 0..{num_classes - 1}")
    x01, xb, labels = to_unit(test["x"]).to(device), test["xb"].to(device), test["y"]
    seed, precision = params.run.seed, params.engine.precision_on(device)
    steps = {"dcgan": cfg.gan_steps, "vae": cfg.vae_steps, "autoencoder": cfg.ae_steps}
    device_name = describe_device(device)
    info = provenance("anogan", params, device_name, data)
    per_class = {m: {} for m in METHODS}
    seconds = {"train": {}, "inversion": {}}
    bench: dict = {}
    grids = {}
    with StageRun("anogan", params, ["run", "anogan", "dcgan", "vae", "autoencoder"],
                  {k: info[k] for k in ("profile", "device", "commit")}) as run:
        normals = [one_class(train, c) for c in cfg.classes]
        trained: dict[str, list[nn.Module]] = {}
        for name, n_steps in steps.items():  # each model kind: one program for all the classes
            trained[name], seconds["train"][name] = train_one_class_together(
                name, params.model(name), normals, params, image_shape, num_classes, [seed + c for c in cfg.classes],
                n_steps)
            for c, model in zip(cfg.classes, trained[name]):
                save_model(model, name, models / f"{'gan' if name == 'dcgan' else name}_{c}.pt")
        for k, (c, normal) in enumerate(zip(cfg.classes, normals)):
            anomalous = labels != c
            gan = trained["dcgan"][k].to(device)
            features = frozen_features(gan, to_unit(normal["x"]).to(device))
            _sync(device)
            began = time.perf_counter()
            z, score = anogan_scores(gan, features, x01, steps=cfg.inversion_steps, lr=cfg.inversion_lr,
                                     lam=cfg.lam, chunk=cfg.chunk, seed=seed + c, precision=precision)
            _sync(device)
            seconds["inversion"][str(c)] = time.perf_counter() - began
            scores = {"anogan": score,
                      "vae": vae_scores(trained["vae"][k].to(device), xb, cfg.vae_samples, seed + c),
                      "autoencoder": autoencoder_scores(trained["autoencoder"][k].to(device), xb)}
            for method, s in scores.items():
                per_class[method][str(c)] = auroc(s, anomalous)
            if cfg.bench_single and not bench:  # the unbatched loop, timed once on a sample
                per_image = single_image_seconds(gan, features, x01[:cfg.bench_single], steps=cfg.inversion_steps,
                                                 lr=cfg.inversion_lr, lam=cfg.lam, seed=seed, precision=precision)
                extrapolated = per_image * len(x01)
                bench = {"single_images": min(cfg.bench_single, len(x01)), "single_per_image_s": per_image,
                         "single_extrapolated_s": extrapolated,
                         "speedup": extrapolated / max(seconds["inversion"][str(c)], 1e-9)}
            grids[f"class_{c}"] = (figure(gan, x01, z, labels.to(device), c, cfg.figure_images), cfg.figure_images)
            run.log_metrics(c, {f"auroc/{m}": per_class[m][str(c)] for m in METHODS}
                            | {"inversion_s": seconds["inversion"][str(c)]})
            print(f"normal class {c}: AUROC " + ", ".join(f"{m} {per_class[m][str(c)]:.3f}" for m in METHODS)
                  + f"; inversion {seconds['inversion'][str(c)]:.1f} s")
        means = {m: sum(v.values()) / len(v) for m, v in per_class.items()}
        inversion_mean = sum(seconds["inversion"].values()) / len(seconds["inversion"])
        summary = {
            "protocol": (f"one-vs-rest (Ruff et al. 2018): per normal class c, a DCGAN, a VAE and an autoencoder "
                         f"trained on the training images of class c only ({cfg.gan_steps}, {cfg.vae_steps} and "
                         f"{cfg.ae_steps} updates, every class the same); {len(x01)} test images scored, anomaly = "
                         f"label != c; AUROC per class and the mean over classes {cfg.classes}. AnoGAN score = "
                         f"(1 - {cfg.lam}) * sum|x - G(z*)| + {cfg.lam} * sum|f(x) - f(G(z*))| after "
                         f"{cfg.inversion_steps} Adam steps on z (lr {cfg.inversion_lr}, z clamped to the prior's "
                         f"box), f = D's conv features with BatchNorm fixed to class-c training statistics; VAE "
                         f"score = -ELBO averaged over {cfg.vae_samples} samples, autoencoder score = reconstruction "
                         f"BCE, both on the fixed binarized test images (nats)."),
            "classes": cfg.classes, "auroc": per_class, "mean_auroc": means, "anchors_mean_auroc": ANCHORS,
            "test_images": len(x01), "inversion_steps": cfg.inversion_steps, "lam": cfg.lam,
            "train_steps": steps, "trained_together": True,  # each model kind's classes as copies in one program
            "seconds": {"device": device_name, "inversion_per_class": seconds["inversion"],
                        "inversion_mean": inversion_mean, "images": len(x01), "chunk": cfg.chunk, **bench,
                        "train": seconds["train"]},
            "provenance": info,
        }
        write_metrics(metrics / "anogan.json", summary)
        write_table(metrics / "plots" / "anogan_auroc.csv",
                    [{"class": c, **{m: per_class[m][str(c)] for m in METHODS}} for c in cfg.classes])
        save_pictures(grids, metrics / "figures" / "anogan")
        run.log_metrics(len(cfg.classes), {f"mean_auroc/{m}": v for m, v in means.items()})
        run.log_artifacts(metrics / "figures" / "anogan", "figures/anogan")
    print("mean AUROC over classes " + ", ".join(f"{m} {v:.3f}" for m, v in means.items()))
    return summary
