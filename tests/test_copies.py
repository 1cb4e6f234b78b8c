"""genzoo.engine.copies: N copies of a model trained together by one fit() end with the weights, optimizer state
and losses of the N copies trained apart with the same seeds, bit for bit on a CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import SHAPE

from genzoo.data.loading import labelled_subset, load_split
from genzoo.engine.copies import Copies, own_sets_as_one, split_history
from genzoo.engine.training import fit
from genzoo.models.registry import build_model
from genzoo.params import EngineParams

ENGINE = EngineParams(device="cpu", precision="fp32", log_every=3, eval_every=5, checkpoint_every=100,
                      threads=1)  # bit-exact equality needs one thread count throughout: never "auto"'s share
SEEDS = [3, 5]


@pytest.fixture(scope="module")
def data(tiny_processed):
    return {split: load_split(tiny_processed, split) for split in ("train", "val")}


def _build(name, tiny_params, data, seed):
    config = dataclasses.replace(tiny_params.model(name), epochs=2)
    model = build_model(name, config, SHAPE, 10, seed=seed)
    if name == "triplegan":
        keep = labelled_subset(data["train"]["y"], 2, 0)
        model.attach_labelled(data["train"]["x"][keep], data["train"]["y"][keep])
    return model, config


@pytest.mark.parametrize("name", ["dcgan", "vae", "triplegan"])
def test_copies_trained_together_equal_copies_trained_apart(name, tiny_params, data):
    """Noise, dropout, batch order and the labelled draws of Triple-GAN all come from each copy's own streams."""
    train = {"x": data["train"]["x"], "xb": data["train"]["xb"]}
    val = {k: data["val"][k] for k in ("x", "xb", "y")}
    apart = []
    for seed in SEEDS:
        model, config = _build(name, tiny_params, data, seed)
        result = fit(model, train, config=config, engine=ENGINE, seed=seed, val=val, progress=False)
        apart.append((model, result))
    together = Copies([_build(name, tiny_params, data, seed)[0] for seed in SEEDS], SEEDS)
    torch.manual_seed(123)  # whatever the caller's stream holds: each copy starts from its own seed
    joint = fit(together, train, config=config, engine=ENGINE, seed=0, val=val, progress=False)
    assert joint.steps == apart[0][1].steps
    for (model, result), copy, history in zip(apart, together.copies, split_history(joint.history, len(SEEDS))):
        for key, value in model.state_dict().items():
            assert torch.equal(value, copy.state_dict()[key]), f"{name}: {key} differs"
        trained = [{k: v for k, v in row.items() if k.startswith("train/") and k != "train/steps_per_s"}
                   for row in result.history]
        assert [row for row in trained if row] == [
            {k: v for k, v in row.items() if k.startswith("train/") and k != "train/steps_per_s"}
            for row in history if any(k.startswith("train/") and k != "train/steps_per_s" for k in row)]


def test_copies_resume_from_a_checkpoint_with_each_copys_stream(tiny_params, data, tmp_path):
    """Stopped and resumed, the copies end where an uninterrupted run of them ends (their streams are saved)."""
    train = {"x": data["train"]["x"], "xb": data["train"]["xb"]}

    def run(stop_after=None):
        copies = Copies([_build("dcgan", tiny_params, data, seed)[0] for seed in SEEDS], SEEDS)
        config = copies.config
        fit(copies, train, config=config, engine=ENGINE, seed=0, checkpoint=tmp_path / "ckpt.pt", fingerprint="f",
            stop_after=stop_after, progress=False)
        return copies

    run(stop_after=4)
    resumed = run()
    (tmp_path / "ckpt.pt").unlink()
    straight = run()
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_copies_need_one_seed_each_and_history_splits_by_copy():
    with pytest.raises(ValueError, match="one seed per model"):
        Copies([torch.nn.Linear(1, 1)], [0, 1])
    history = [{"step": 3, "train/0/loss": 1.0, "train/1/loss": 2.0, "train/steps_per_s": 9.0},
               {"step": 5, "val/1/nll": 4.0}]
    assert split_history(history, 2) == [[{"step": 3, "train/loss": 1.0, "train/steps_per_s": 9.0}],
                                         [{"step": 3, "train/loss": 2.0, "train/steps_per_s": 9.0},
                                          {"step": 5, "val/nll": 4.0}]]


@pytest.mark.parametrize("name", ["dcgan", "vae", "autoencoder"])
def test_copies_with_sets_of_their_own_equal_runs_apart_of_the_same_steps(name, tiny_params, data):
    """AnoGAN's one-class models: each copy its own class (sets of different sizes, smaller than the batch for one),
    each the run's `steps` updates through its own epochs, as fit(steps=...) gives each alone."""
    config = dataclasses.replace(tiny_params.model(name), batch_size=12)
    train = data["train"]
    sets = [{"x": train["x"][train["y"] == c], "y": train["y"][train["y"] == c]} for c in (0, 1, 2)]
    sets[2] = {k: v[:10] for k, v in sets[2].items()}  # 10 rows: one batch of 10, as fit() alone makes it
    assert len({len(s["y"]) for s in sets}) == 3 and all(len(s["y"]) < 4 * 12 for s in sets[:2])
    seeds, steps = [3, 5, 7], 9  # more steps than one pass over any of the sets
    apart = []
    for seed, own in zip(seeds, sets):
        model = build_model(name, config, SHAPE, 10, seed=seed)
        apart.append((model, fit(model, own, config=config, engine=ENGINE, seed=seed, progress=False, steps=steps)))
    together = Copies([build_model(name, config, SHAPE, 10, seed=seed) for seed in seeds], seeds)
    joint = fit(together, own_sets_as_one(sets), config=config, engine=ENGINE, seed=0, progress=False, steps=steps)
    assert joint.steps == steps and all(result.steps == steps for _, result in apart)
    for (model, _), copy in zip(apart, together.copies):
        for key, value in model.state_dict().items():
            assert torch.equal(value, copy.state_dict()[key]), f"{name}: {key} differs"


def test_copies_refuse_a_mix_of_own_and_shared_sets_and_burda_epochs_of_different_lengths(tiny_params, data):
    config = tiny_params.model("vae")
    copies = Copies([build_model("vae", config, SHAPE, 10, seed=s) for s in (0, 1)], [0, 1])
    x = data["train"]["x"]
    with pytest.raises(ValueError, match="its own set"):
        copies.rows({"0/x": x, "x": x})
    assert copies.rows({"0/x": x[:30], "1/x": x[:20]}) == 20 and copies.rows({"x": x}) == len(x)
    burda = Copies([build_model("vae", dataclasses.replace(config, lr_schedule="burda"), SHAPE, 10, seed=s)
                    for s in (0, 1)], [0, 1])
    with pytest.raises(ValueError, match="burda"):
        burda.rows({"0/x": x[:30], "1/x": x[:20]})
    with pytest.raises(ValueError, match="steps must be at least 1"):
        fit(copies, {"x": x}, config=config, engine=ENGINE, seed=0, progress=False, steps=0)
