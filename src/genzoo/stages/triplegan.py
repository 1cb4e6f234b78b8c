"""The `triplegan` stage: semi-supervised MNIST with 100 labels (Li et al. 2017), against the same C on 100 labels.

For every seed in `triplegan.seeds`: a Triple-GAN is built with that seed, given the shared labelled subset
(genzoo.data.loading.labelled_subset: `data.labelled_per_class` per class, drawn with `data.labelled_seed`)
and trained on the *images* of the training split only (its labels never reach the model). The seeds train
together, as copies in one fit() (genzoo.engine.copies: each exactly as it would train alone, one CUDA graph for
all on a GPU); C's test error is measured on the test split for each. Beside it, the baseline: the same C
architecture, same seed, trained on the labelled subset alone (cross-entropy only, same optimizer and labelled
batch) for as many C updates as the Triple-GAN's C got, so the only difference is what the unlabelled digits and
G add.
Outputs: metrics/triplegan.json (per-seed errors, mean ± std over the seeds (none for one seed), the number of
test images scored, anchors), metrics/plots/triplegan_train.csv
(the first seed's losses), metrics/figures/triplegan/ (first seed: one row per class, one column per shared z),
models/triplegan/seed<k>.pt, one MLflow run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.data.loading import labelled_subset, load_meta, load_split
from genzoo.engine.copies import Copies, copy_of, split_history
from genzoo.engine.pictures import save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics, write_plot
from genzoo.engine.training import describe_device, fit, resolve_device
from genzoo.models import triplegan
from genzoo.models.blocks import adam, to_unit
from genzoo.models.registry import save_model
from genzoo.params import Params
from genzoo.stages.train import checkpoint_dir, fingerprint

NAME = "triplegan"
ANCHORS = ("MNIST, 100 labels, test error: Triple-GAN 0.91 ± 0.58 % (Li et al. 2017), Improved-GAN 0.93 % "
           "(Salimans et al. 2016)")  # the targets: src/genzoo/targets.yaml


def test_error(predict, test: dict[str, torch.Tensor]) -> float:
    return float((predict(test["x"]).cpu() != test["y"].cpu()).double().mean())


def supervised_baseline(config: triplegan.Config, x_l: torch.Tensor, y_l: torch.Tensor, steps: int, seed: int,
                        image_shape, num_classes: int, device: torch.device) -> torch.nn.Module:
    """C alone on the labelled pairs: cross-entropy, Adam(lr_c, β1), minibatches of `labelled_batch` drawn with
    replacement, `steps` updates; returned in eval mode."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        cls = triplegan.classifier(config.c_width, config.c_dropout, image_shape[0], num_classes).to(device).train()
        opt = adam(cls.parameters(), config.lr_c, (config.beta1, 0.999))
        x_l, y_l = to_unit(x_l.to(device)), y_l.to(device)
        for _ in range(steps):
            idx = torch.randint(0, len(y_l), (config.labelled_batch,), device=device)
            loss = F.cross_entropy(cls(x_l[idx]), y_l[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return cls.eval()


def summarize(errors: list[float]) -> dict:
    """Per-seed errors, their mean and their std over the seeds (n - 1); a single seed has no std (None)."""
    return {"test_error": errors, "n": len(errors), "mean": statistics.fmean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else None}


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry model this stage fits."""
    return [NAME]


def triplegan_stage(params: Params, data: Path, models: Path, metrics: Path) -> dict:
    config: triplegan.Config = params.model(NAME)
    meta = load_meta(data)
    image_shape, num_classes = tuple(meta["image_shape"]), len(meta["classes"])
    device = resolve_device(params.engine.device)
    train, val, test = (load_split(data, split) for split in ("train", "val", "test"))
    labelled = labelled_subset(train["y"], params.data.labelled_per_class, params.data.labelled_seed)
    x_l, y_l = train["x"][labelled], train["y"][labelled]
    unlabelled = {"x": train["x"]}  # images only: the model never sees a training label outside the subset
    val = {"x": val["x"], "y": val["y"]}
    test = {k: v.to(device) for k, v in test.items()}
    info = provenance(NAME, params, describe_device(device), data)
    per_seed, baseline_errors = [], []
    with StageRun(NAME, params, ["run", "data", "engine", NAME],
                  {k: info[k] for k in ("profile", "device", "commit", "dirty", "data_hash")}) as run:
        seeds = list(config.seeds)
        models_by_seed = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                models_by_seed.append(triplegan.Model(config, image_shape, num_classes))
            models_by_seed[-1].attach_labelled(x_l, y_l)
        copies = Copies(models_by_seed, seeds)
        key = f"{fingerprint(NAME, config, params, meta['data_hash'])}-seeds{seeds}-labels{labelled.tolist()}"
        checkpoint = checkpoint_dir(models) / f"{NAME}_seeds.pt"

        def log(step: int, row: dict) -> None:  # "train/<i>/loss_c" -> "seed<k>/train/loss_c"; shared keys as they are
            named = {}
            for key, value in row.items():
                i, name = copy_of(key)
                named[name if i is None else f"seed{seeds[i]}/{name}"] = value
            run.log_metrics(step, named)

        result = fit(copies, unlabelled, config=config, engine=params.engine, seed=seeds[0], val=val,
                     checkpoint=checkpoint, fingerprint=key, on_log=log, label=NAME)
        history = split_history(result.history, len(seeds))[0]
        for i, (seed, model) in enumerate(zip(seeds, models_by_seed)):
            per_seed.append(test_error(model.predict, test))
            save_model(model, NAME, models / NAME / f"seed{seed}.pt")
            if i == 0:
                torch.manual_seed(seed)
                save_pictures(model.pictures(), metrics / "figures" / NAME)
            cls = supervised_baseline(config, x_l, y_l, result.steps, seed, image_shape, num_classes, device)
            with torch.no_grad():
                baseline_errors.append(test_error(
                    lambda x: torch.cat([cls(to_unit(x[j:j + 2048])).argmax(1) for j in range(0, len(x), 2048)]),
                    test))
            run.log_metrics(result.steps, {f"seed{seed}/test/error_c": per_seed[-1],
                                           f"seed{seed}/test/error_baseline": baseline_errors[-1]})
            print(f"triplegan seed {seed}: C test error {per_seed[-1]:.4f}, "
                  f"C on {len(labelled)} labels alone {baseline_errors[-1]:.4f} ({result.steps} C updates)")
        checkpoint.unlink(missing_ok=True)
        summary = {"model": NAME, "seeds": list(config.seeds), "labelled": len(labelled),
                   "labelled_per_class": params.data.labelled_per_class, "labelled_seed": params.data.labelled_seed,
                   "test_images": len(test["y"]),  # what the verdict's protocol counts (targets.yaml)
                   "triplegan": summarize(per_seed), "baseline": summarize(baseline_errors),
                   "baseline_note": "the same C architecture, cross-entropy on the labelled subset only, as many "
                                    "C updates as the Triple-GAN run", "steps": result.steps,
                   "epochs": config.epochs, "train_seconds": round(result.seconds, 2),
                   "trained_together": len(seeds), "anchors": ANCHORS, "provenance": info}
        write_metrics(metrics / f"{NAME}.json", summary)
        write_plot(metrics / "plots" / f"{NAME}_train.csv", history, "train/")
        run.log_metrics(result.steps, {"test/error_c_mean": summary["triplegan"]["mean"],
                                       "test/error_baseline_mean": summary["baseline"]["mean"]})
        run.log_artifacts(metrics / "figures" / NAME, "figures")
    return summary
