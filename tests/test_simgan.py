"""SimGAN: the history buffer, the local (patch) discriminator, self-regularization, the pretraining switch, and
the fixed classifier recipe of its score. (D first, then R through a frozen D: tests/test_adversarial.py.)"""

from __future__ import annotations

import torch
from helpers import same, weights
from torch import nn

from genzoo.models import simgan
from genzoo.models.evaluator import Config as EvaluatorConfig
from genzoo.models.evaluator import Model as Evaluator

SHAPE = (1, 28, 28)


def tiny_simgan(**changes) -> simgan.Model:
    config = simgan.Config(**{"width": 8, "blocks": 1, "disc_width": 8, "history_size": 8, "batch_size": 4,
                              "pretrain_steps": 0, "optimizer": "adam", "lr": 1e-3, "eval_images": 40,
                              "eval_steps": 5, **changes})
    torch.manual_seed(0)
    return simgan.Model(config, SHAPE)


def synthetic_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Stand-in for derived.build("synthetic", ...): the same keys, random uint8 images."""
    gen = torch.Generator().manual_seed(seed)
    img = lambda: (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8)
    return {"a": img(), "y_a": torch.arange(n) % 10, "b": img(), "y": (torch.arange(n) + 3) % 10}


def constant_images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()  # (B, 1, 28, 28)


def ids(images: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in images[:, 0, 0, 0].tolist()]


def test_history_buffer_half_from_history_once_full_and_only_refined_images():
    torch.manual_seed(0)
    model = tiny_simgan()  # buffer of 8, D minibatch of 4: 2 current + 2 from history, 2 written per call
    written: set[float] = set()
    first = constant_images([0.01, 0.02, 0.03, 0.04])
    assert torch.equal(model.mix_history(first), first)  # empty buffer: every image is the current one
    written |= set(ids(first[:2]))
    for call in range(1, 12):
        current = constant_images([call / 20 + k / 1000 for k in range(4)])
        mixed = model.mix_history(current)
        assert mixed.shape == current.shape
        assert torch.equal(mixed[:2], current[:2])  # the current half
        if call >= 4:  # 4 calls × 2 images: the buffer is full, the second half is all history
            assert set(ids(mixed[2:])) <= written and not set(ids(mixed[2:])) & set(ids(current))
        written |= set(ids(current[:2]))
        assert int(model.history_filled) == min(2 * (call + 1), 8)
        assert set(ids(model.history[:int(model.history_filled)])) <= written  # nothing but refined images
    assert int(model.history_filled) == 8


def test_history_buffer_survives_a_state_dict_round_trip():
    model = tiny_simgan()
    for call in range(5):
        model.mix_history(constant_images([call / 10 + k / 100 for k in range(4)]))
    copy = tiny_simgan()
    assert not torch.equal(copy.history, model.history)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.history, model.history) and int(copy.history_filled) == 8
    current = constant_images([0.9, 0.91, 0.92, 0.93])
    torch.manual_seed(1)
    a = model.mix_history(current)
    torch.manual_seed(1)
    assert torch.equal(copy.mix_history(current), a)


def test_train_step_stores_the_refined_images_in_the_buffer():
    model = tiny_simgan(history_size=16)
    batch = synthetic_batch(12)  # 3 minibatches of 4: D's, then R's two
    with torch.no_grad():
        expected = model.refine(batch["a"][:4].float() / 255)  # R before the step refines D's minibatch
    model.train_step(batch, model.configure_optimizers())
    assert int(model.history_filled) == 2
    torch.testing.assert_close(model.history[:2], expected[:2])
    assert model.history[2:].abs().sum() == 0


def test_local_discriminator_returns_a_patch_map_of_local_verdicts():
    model = tiny_simgan()
    x = torch.rand(3, *SHAPE)
    logits = model.criticize(x)
    assert logits.shape == (3, 1, 7, 7)
    y = x.clone()
    y[:, :, :3, :3] = 1 - y[:, :, :3, :3]  # change the top-left corner only
    changed = (model.criticize(y) - logits).abs()[0, 0] > 0
    assert changed[0, 0] and not changed[-1, -1] and changed.sum() < 49  # only the patches that see it


def test_self_regularization_is_zero_for_an_identity_refiner_and_l1_otherwise():
    model = tiny_simgan(reg_weight=1.0)
    model.gen = nn.Identity()  # refine(x) = ((2x - 1) + 1) / 2 = x
    x = synthetic_batch(4)["a"].float() / 255
    assert float(simgan.self_regularization(model.refine(x), x)) < 1e-7
    assert abs(float(simgan.self_regularization(x.clamp(max=0.8) * 0 + 0.25, torch.zeros_like(x))) - 0.25) < 1e-6


def test_adversarial_term_is_off_during_pretraining():
    model = tiny_simgan(pretrain_steps=2, reg_weight=0.0)  # R's only loss is the adversarial one
    opt = model.configure_optimizers()
    switched = []
    for step in range(3):
        before = weights(model.gen)
        out = model.train_step(synthetic_batch(12, seed=step), opt)
        switched.append(float(out["adv_on"]))
        assert same(before, weights(model.gen)) == (step < 2)  # no gradient reaches R while pretraining
    assert switched == [0.0, 0.0, 1.0] and int(model.steps) == 3


def test_train_step_works_on_tiny_batches():
    model = tiny_simgan(batch_size=1)
    out = model.train_step(synthetic_batch(2), model.configure_optimizers())  # fewer rows than updates
    assert all(torch.isfinite(v) for v in out.values())


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright left half, class 1: a bright right half, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, *SHAPE, generator=gen) * 0.3
    x[y == 0, :, :, :14] += 0.7
    x[y == 1, :, :, 14:] += 0.7
    return x, y


def test_classifier_recipe_learns_a_separable_set_deterministically():
    x, y = separable(40, seed=0)
    test_x, test_y = separable(40, seed=1)
    nets = [simgan.train_classifier(x, y, steps=10, num_classes=2) for _ in range(2)]
    assert same(weights(nets[0]), weights(nets[1]))
    assert simgan.classifier_error(x, y, test_x, test_y, steps=10) == 0.0
    assert simgan.classifier_error(x, 1 - y, test_x, test_y, steps=10) == 1.0  # it learns the labels it is given
    state = torch.get_rng_state()
    simgan.train_classifier(x, y, steps=2)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left as it was


def test_translate_pictures_and_extra_scores():
    model = tiny_simgan()
    data = {split: synthetic_batch(100, seed=i) for i, split in enumerate(("train", "val", "test"))}
    out = model.translate(data["test"])
    assert out.shape == (100, *SHAPE) and 0 <= float(out.min()) and float(out.max()) <= 1
    grids = model.pictures(data["test"])
    assert grids["refined"][0].shape == (100, *SHAPE)
    torch.testing.assert_close(grids["refined"][0][:10], data["test"]["a"][:10].float() / 255)  # synthetic row
    torch.testing.assert_close(grids["refined"][0][10:20], out[:10])  # then its refinement
    small = model.pictures({k: v[:7] for k, v in data["test"].items()})  # a tiny test split still draws
    assert small["refined"][0].shape == (14, *SHAPE) and small["refined"][1] == 7
    torch.manual_seed(0)
    evaluator = Evaluator(EvaluatorConfig(), SHAPE).eval()
    scores = model.extra_scores(data, evaluator)
    assert {"real_test_error_raw", "real_test_error_refined", "error_reduction", "evaluator_accuracy_raw",
            "evaluator_accuracy_refined", "fd_raw", "fd_refined"} <= scores.keys()
    assert all(0 <= scores[k] <= 1 for k in ("real_test_error_raw", "real_test_error_refined"))
    assert abs(scores["error_reduction"]
               - (1 - scores["real_test_error_refined"] / scores["real_test_error_raw"])) < 1e-9
