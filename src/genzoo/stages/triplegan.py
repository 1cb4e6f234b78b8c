"""The `triplegan` stage: semi-supervised MNIST with 100 labels (Li et al. 2017), against the same C on 100 labels.

For every seed in `triplegan.seeds`: a Triple-GAN is built with that seed, given the shared labelled subset
(genzoo.data.loading.labelled_subset: `data.labelled_per_class` per class, drawn with `data.labelled_seed`)
and trained on the *images* of the training split only (its labels never reach the model); with
`triplegan.unlabelled: train+val` (the authors' script) on those of the validation split too, which then monitors
a run on digits it saw unlabelled (the paper recipe picks nothing on it). The seeds train
together, as copies in one fit() (genzoo.engine.copies: each exactly as it would train alone, one CUDA graph for
all on a GPU); C's test error is measured on the test split for each. Beside it, the baseline: the same C
architecture, same seed, trained on the labelled subset alone (cross-entropy only, same optimizer and labelled
batch) for as many C updates as the Triple-GAN's C got, so the only difference is what the unlabelled digits and
G add.
With `triplegan.c_pretrain_epochs` > 0 (the paper recipe), each seed's C first trains alone on the labelled pairs
for that many epochs of the unlabelled set's steps (in batches of `pretrain_batch` where it reads them): a fit() of
its own before the game, the seeds again as copies (triplegan.Pretraining), each seed on the stream of seed +
PRETRAIN_STREAM so the game does not replay its draws; a checkpoint of the game resumes past it. The baseline then
gets C's whole optimizer history: as many pre-training updates, then the game's updates at the game's lr schedule,
and the moving average of its weights (ema_decay) where Triple-GAN's C has one.
Outputs: metrics/triplegan.json (per-seed errors, mean ± std over the seeds (none for one seed), the number of
test images scored, C's pre-training steps, anchors), metrics/plots/triplegan_train.csv
(the first seed's losses), metrics/figures/triplegan/ (first seed: one row per class, one column per shared z),
models/triplegan/seed<k>.pt, one MLflow run.
pipeline/gpu_models.py runs the stage as a part (`--recipe paper ... triplegan`): within a window (`stop_at`, its
checkpoint in the part's folder), without the baseline (its eager C steps would outlast a window; `make gpu`'s
DVC stage trains it).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.data.loading import labelled_subset, load_meta, load_split
from genzoo.engine.copies import Copies, copy_of, split_history
from genzoo.engine.errors import Interrupted
from genzoo.engine.io import load_torch
from genzoo.engine.pictures import save_pictures
from genzoo.engine.tracking import StageRun, provenance, write_metrics, write_plot
from genzoo.engine.training import _schedule, describe_device, fit, resolve_device
from genzoo.models import triplegan
from genzoo.models.blocks import adam, to_unit
from genzoo.models.registry import save_model
from genzoo.params import Params
from genzoo.stages.train import checkpoint_dir, fingerprint

NAME = "triplegan"
ANCHORS = ("MNIST, 100 labels, test error: Triple-GAN 0.91 ± 0.58 % (Li et al. 2017), Improved-GAN 0.93 % "
           "(Salimans et al. 2016)")  # the targets: src/genzoo/targets.yaml
PRETRAIN_STREAM = 1_000_000  # C's pre-training of seed s draws from the stream of seed s + this
CHECKPOINT = f"{NAME}_seeds.pt"  # the seeds' resumable checkpoint (C's pre-training's, then the game's)


def test_error(predict, test: dict[str, torch.Tensor]) -> float:
    return float((predict(test["x"]).cpu() != test["y"].cpu()).double().mean())


def supervised_baseline(config: triplegan.Config, x_l: torch.Tensor, y_l: torch.Tensor, steps: int, seed: int,
                        image_shape, num_classes: int, device: torch.device, pretrain_steps: int = 0,
                        steps_per_epoch: int = 1) -> torch.nn.Module:
    """C alone on the labelled pairs with the optimizer history of Triple-GAN's C: `pretrain_steps` updates of a fresh
    Adam(pretrain_lr or lr_c, pretrain_beta1) at a constant lr (its pre-training), then `steps` updates of another
    Adam(lr_c, β1) at the section's lr schedule over epochs of `steps_per_epoch` (the game's); cross-entropy on
    minibatches of `labelled_batch` drawn with replacement, plus C's weight decay where c_weight_decay > 0 (the
    terms that read unlabelled digits are left out: this is C on the labels alone); with ema_decay > 0 the moving
    average of its weights after every update, which is what is returned (in eval mode). The defaults: `steps`
    updates of one Adam at a constant lr."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        cls = triplegan.classifier(config.c_width, config.c_dropout, image_shape[0], num_classes).to(device).train()
        average = triplegan.ema_copy(cls) if config.ema_decay > 0 else None
        x_l, y_l = to_unit(x_l.to(device)), y_l.to(device)
        for updates, scheduled in ((pretrain_steps, False), (steps, True)):
            if not updates:
                continue
            lr, beta1 = (config.lr_c, config.beta1) if scheduled else (config.pretrain_lr or config.lr_c,
                                                                        config.pretrain_beta1)
            opt = adam(cls.parameters(), lr, (beta1, 0.999))
            schedule = _schedule(opt, config.lr_schedule, updates, steps_per_epoch, config) if scheduled else None
            for _ in range(updates):
                idx = torch.randint(0, len(y_l), (config.labelled_batch,), device=device)
                loss = F.cross_entropy(cls(x_l[idx]), y_l[idx])
                if config.c_weight_decay:
                    loss = loss + config.c_weight_decay * triplegan.last_layer_l2(cls)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if average is not None:
                    triplegan.ema_update(average, cls, config.ema_decay)
                if schedule is not None:
                    schedule.step()
    return (cls if average is None else average).eval()


def resumes_game(path: Path, key: str) -> bool:
    """Whether the checkpoint at `path` is the game's (its fingerprint `key`): C's pre-training is then in its
    weights. Reads no weights (memory-mapped); an unreadable file is not."""
    if not path.exists():
        return False
    try:
        state = load_torch(path, mmap=True)
    except Exception:
        return False
    return state.get("fingerprint") == key


def summarize(errors: list[float]) -> dict:
    """Per-seed errors, their mean and their std over the seeds (n - 1); a single seed has no std (None)."""
    return {"test_error": errors, "n": len(errors), "mean": statistics.fmean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else None}


def models_used(raw: dict, target: str | None = None) -> list[str]:
    """The registry model this stage fits."""
    return [NAME]


def triplegan_stage(params: Params, data: Path, models: Path, metrics: Path, stop_at: float | None = None,
                    checkpoints: Path | None = None, baseline: bool = True) -> dict:
    """The stage (module docstring). `stop_at` (a time.monotonic() deadline) pauses the training at a checkpoint in
    `checkpoints` (default: beside the models) and raises Interrupted, its steps counted over C's pre-training then
    the game; `baseline=False` leaves the baseline out (a part run within a window: pipeline/gpu_models.py)."""
    config: triplegan.Config = params.model(NAME)
    meta = load_meta(data)
    image_shape, num_classes = tuple(meta["image_shape"]), len(meta["classes"])
    device = resolve_device(params.engine.device)
    train, val, test = (load_split(data, split) for split in ("train", "val", "test"))
    labelled = labelled_subset(train["y"], params.data.labelled_per_class, params.data.labelled_seed)
    x_l, y_l = train["x"][labelled], train["y"][labelled]
    # images only: the model never sees a training label outside the subset
    unlabelled = {"x": train["x"] if config.unlabelled == "train" else torch.cat([train["x"], val["x"]])}
    val = {"x": val["x"], "y": val["y"]}
    test = {k: v.to(device) for k, v in test.items()}
    steps_per_epoch = len(unlabelled["x"]) // min(config.batch_size, len(unlabelled["x"]))  # fit()'s
    pretrain_batch = min(triplegan.pretrain_batch_size(config), len(unlabelled["x"]))
    pretrain_steps = config.c_pretrain_epochs * (len(unlabelled["x"]) // pretrain_batch)
    all_steps = pretrain_steps + config.epochs * steps_per_epoch  # what a pause counts: pre-training, then the game
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
                models_by_seed[-1].attach_labelled(x_l, y_l)  # labelled_draw cycle: its order, from this seed
            if config.disc_real_unlabelled:
                models_by_seed[-1].attach_unlabelled(unlabelled["x"])
        copies = Copies(models_by_seed, seeds)
        key = f"{fingerprint(NAME, config, params, meta['data_hash'])}-seeds{seeds}-labels{labelled.tolist()}"
        checkpoint = checkpoint_dir(models, checkpoints) / CHECKPOINT

        def logger(phase: str):  # "train/<i>/loss_c" -> "seed<k>/train/loss_c"; shared keys as they are; C's
            def log(step: int, row: dict) -> None:  # pre-training's "pretrain/..." and "pretrain_val/..."
                named = {}
                for key, value in row.items():
                    i, name = copy_of(key)
                    if phase != "train":
                        group, _, rest = name.partition("/")
                        name = f"{phase}/{rest}" if group == "train" else f"{phase}_{group}/{rest}"
                    named[name if i is None else f"seed{seeds[i]}/{name}"] = value
                run.log_metrics(step, named)
            return log

        pretrained, seconds, resumed = None, 0.0, 0
        if pretrain_steps and not resumes_game(checkpoint, key):  # C alone first, every seed as a copy
            firsts = Copies([triplegan.Pretraining(model) for model in models_by_seed],
                            [seed + PRETRAIN_STREAM for seed in seeds])
            try:
                pretrained = fit(firsts, unlabelled, config=firsts.config, engine=params.engine,
                                 seed=seeds[0] + PRETRAIN_STREAM, val=val, checkpoint=checkpoint,
                                 fingerprint=f"{key}-pretrain", on_log=logger("pretrain"), label=NAME,
                                 stop_at=stop_at)
            except Interrupted as paused:
                raise Interrupted(f"C's pre-training {paused}", paused.step, all_steps) from None
            checkpoint.unlink(missing_ok=True)  # its weights go on in the game's fit (and the game's checkpoints)
            seconds, resumed = pretrained.seconds, pretrained.resumed_from
        try:
            result = fit(copies, unlabelled, config=config, engine=params.engine, seed=seeds[0], val=val,
                         checkpoint=checkpoint, fingerprint=key, on_log=logger("train"), label=NAME, stop_at=stop_at)
        except Interrupted as paused:
            raise Interrupted(str(paused), pretrain_steps + paused.step, all_steps) from None
        if result.resumed_from:
            resumed = pretrain_steps + result.resumed_from
        history = split_history(result.history, len(seeds))[0]
        for i, (seed, model) in enumerate(zip(seeds, models_by_seed)):
            per_seed.append(test_error(model.predict, test))
            save_model(model, NAME, models / NAME / f"seed{seed}.pt")
            if i == 0:
                torch.manual_seed(seed)
                save_pictures(model.pictures(), metrics / "figures" / NAME)
            shown = {f"seed{seed}/test/error_c": per_seed[-1]}
            if baseline:
                cls = supervised_baseline(config, x_l, y_l, result.steps, seed, image_shape, num_classes, device,
                                          pretrain_steps, steps_per_epoch)
                with torch.no_grad():
                    baseline_errors.append(test_error(
                        lambda x: torch.cat([cls(to_unit(x[j:j + 2048])).argmax(1) for j in range(0, len(x), 2048)]),
                        test))
                shown[f"seed{seed}/test/error_baseline"] = baseline_errors[-1]
            run.log_metrics(result.steps, shown)
            print(f"triplegan seed {seed}: C test error {per_seed[-1]:.4f}"
                  + (f", C on {len(labelled)} labels alone {baseline_errors[-1]:.4f}" if baseline else "")
                  + f" ({pretrain_steps + result.steps} C updates)")
        checkpoint.unlink(missing_ok=True)
        rates = [row["train/steps_per_s"] for row in result.history if "train/steps_per_s" in row]
        summary = {"model": NAME, "seeds": list(config.seeds), "labelled": len(labelled),
                   "labelled_per_class": params.data.labelled_per_class, "labelled_seed": params.data.labelled_seed,
                   "test_images": len(test["y"]),  # what the verdict's protocol counts (targets.yaml)
                   "unlabelled": config.unlabelled, "unlabelled_images": len(unlabelled["x"]),
                   "triplegan": summarize(per_seed),
                   "baseline": summarize(baseline_errors) if baseline else None,
                   "baseline_note": "the same C architecture, cross-entropy on the labelled subset only, as many "
                                    "C updates as the Triple-GAN run" if baseline else
                                    "not trained in this run (a part within a lent window: pipeline/gpu_models.py; "
                                    "the DVC stage trains it)",
                   "steps": result.steps, "c_pretrain_steps": pretrain_steps, "resumed_from": resumed,
                   "final": {"train/steps_per_s": rates[-1]} if rates else {},
                   "epochs": config.epochs, "train_seconds": round(seconds + result.seconds, 2),
                   "trained_together": len(seeds), "anchors": ANCHORS, "provenance": info}
        write_metrics(metrics / f"{NAME}.json", summary)
        write_plot(metrics / "plots" / f"{NAME}_train.csv", history, "train/")
        run.log_metrics(result.steps, {"test/error_c_mean": summary["triplegan"]["mean"],
                                       **({"test/error_baseline_mean": summary["baseline"]["mean"]}
                                          if baseline else {})})
        run.log_artifacts(metrics / "figures" / NAME, "figures")
    return summary
