"""genzoo.engine.copies: N copies of a model trained together by one fit() end with the weights, optimizer state
and losses of the N copies trained apart with the same seeds, bit for bit on a CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import SHAPE

from genzoo.data.loading import labelled_subset, load_split
from genzoo.engine.copies import Copies, split_history
from genzoo.engine.training import fit
from genzoo.models.registry import build_model
from genzoo.params import EngineParams

ENGINE = EngineParams(device="cpu", precision="fp32", log_every=3, eval_every=5, checkpoint_every=100)
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
