"""CycleGAN: shapes, the history pool, cycle / identity losses, and that training reads only the unpaired "a" and
"b" images. (Both Ds first, then both Gs through the frozen Ds: tests/test_adversarial.py.)"""

from __future__ import annotations

import torch
from helpers import tiny_evaluator
from torch import nn

from genzoo.models import cyclegan
from genzoo.models.cyclegan import Config, ImagePool, Model


def tiny_cyclegan(**overrides) -> Model:
    torch.manual_seed(0)
    cfg = dict(width=4, residual_blocks=1, disc_width=4, pool_size=4, batch_size=4, lr=2e-4)
    return Model(Config(**{**cfg, **overrides}))


def unpaired_batch(n: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """A stand-in for derived.build("unpaired", ..., split="train"): thin "a" and thick "b" of other digits."""
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
            "b": torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
            "y_a": torch.randint(0, 10, (n,), generator=g), "y_b": torch.randint(0, 10, (n,), generator=g)}


def test_shapes_and_translation_range():
    model = tiny_cyclegan()
    opt = model.configure_optimizers()
    out = model.train_step(unpaired_batch(), opt)
    assert {"loss_d_a", "loss_d_b", "loss_g_adv", "loss_cycle", "loss_idt", "loss_g"} <= set(out)
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    batch = unpaired_batch(3)
    model.eval()
    for images in (model.translate(batch), model.translate_back(batch)):
        assert images.shape == (3, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    val = {"a": batch["a"], "b": batch["b"], "y": batch["y_a"]}
    assert set(model.validate(val)) == {"l1_ab", "l1_ba", "loss_d_a", "loss_d_b"}
    grids = model.pictures(val | {"a": val["a"].repeat(4, 1, 1, 1), "b": val["b"].repeat(4, 1, 1, 1)})
    assert {k: (v.shape, n) for k, (v, n) in grids.items()} == {
        "a_to_b": ((40, 1, 28, 28), 10), "b_to_a": ((40, 1, 28, 28), 10)}
    assert model.dataset == "unpaired"
    assert model.disc_a(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 7, 7)  # one score per patch


def _images(start: int, n: int) -> torch.Tensor:
    """n distinct images, image k filled with the value k (so a returned image tells which one it is)."""
    return torch.arange(start, start + n).float().view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def _ids(images: torch.Tensor) -> list[int]:
    assert (images == images[:, :1, :1, :1]).all()  # still whole images, never mixed pixels
    return images[:, 0, 0, 0].long().tolist()


def test_pool_stores_the_first_fakes_and_returns_them_as_is():
    torch.manual_seed(0)
    pool = ImagePool(5, (1, 2, 2))
    assert _ids(pool(_images(0, 3))) == [0, 1, 2]
    assert _ids(pool(_images(3, 2))) == [3, 4]
    assert int(pool.count) == 5 and _ids(pool.images[:5]) == [0, 1, 2, 3, 4]
    ids = _ids(pool(_images(5, 4)))  # a full pool: each row is itself or a stored image it replaced
    assert set(ids) <= set(range(9)) and int(pool.count) == 5
    assert sorted(ids + _ids(pool.images[:5])) == list(range(9))  # nothing lost, nothing doubled


def test_pool_once_full_mixes_new_and_stored_images_half_and_half():
    torch.manual_seed(0)
    pool = ImagePool(50, (1, 2, 2))
    assert _ids(pool(_images(0, 50))) == list(range(50))  # the first 50: stored, returned as is
    went_in, stored_returned, total = set(range(50)), 0, 0
    for step in range(40):
        new = _images(1000 + 16 * step, 16)
        ids = _ids(pool(new))
        went_in |= set(_ids(new))
        assert set(ids) <= went_in  # every returned image is one that went in
        assert len(set(ids)) == len(ids)  # a stored image leaves the pool when returned: no twins
        stored_returned += sum(i not in _ids(new) for i in ids)
        total += len(ids)
        in_pool = _ids(pool.images[:50])
        assert set(in_pool) <= went_in and len(set(in_pool)) == 50  # the pool holds 50 distinct past images
    assert 0.42 < stored_returned / total < 0.58  # the paper's coin flip (640 draws: ±3.2 sd)


def test_pool_larger_batch_than_pool_and_size_zero():
    torch.manual_seed(0)
    pool = ImagePool(4, (1, 2, 2))
    assert _ids(pool(_images(0, 10)))[:4] == [0, 1, 2, 3]  # chunked: the first 4 fill the pool
    assert set(_ids(pool.images[:4])) <= set(range(10))
    x = torch.randn(3, 1, 2, 2)
    assert torch.equal(ImagePool(0, (1, 2, 2))(x), x)


def test_pool_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    model = tiny_cyclegan()
    opt = model.configure_optimizers()
    for seed in range(3):
        model.train_step(unpaired_batch(seed=seed), opt)
    state = model.state_dict()
    assert int(state["pool_b.count"]) == 4 and state["pool_b.images"].abs().sum() > 0
    fresh = tiny_cyclegan(pool_size=4)
    assert int(fresh.pool_b.count) == 0
    fresh.load_state_dict(state)
    assert int(fresh.pool_b.count) == 4 and torch.equal(fresh.pool_b.images, model.pool_b.images)
    new = torch.rand(4, 1, 28, 28)
    torch.manual_seed(5)
    expected = model.pool_b(new)
    torch.manual_seed(5)
    assert torch.equal(fresh.pool_b(new), expected)


def _unit(batch):
    return batch["a"].float() / 127.5 - 1, batch["b"].float() / 127.5 - 1


def test_cycle_and_identity_losses_vanish_for_identity_generators():
    model = tiny_cyclegan()
    real_a, real_b = _unit(unpaired_batch())
    losses = model.generator_losses(real_a, real_b, model.gen_ba(real_b), model.gen_ab(real_a))
    assert losses["loss_cycle"] > 0.1 and losses["loss_idt"] > 0.1  # random generators: far from identity
    model.gen_ab, model.gen_ba = nn.Identity(), nn.Identity()
    losses = model.generator_losses(real_a, real_b, real_b, real_a)  # fake_a = F(b) = b, fake_b = G(a) = a
    assert losses["loss_cycle"] == 0 and losses["loss_idt"] == 0


def _generator_grad(model: Model) -> float:
    real_a, real_b = _unit(unpaired_batch())
    for d in (model.disc_a, model.disc_b):  # a constant D: the adversarial term carries no gradient
        for p in d.parameters():
            nn.init.zeros_(p)
    losses = model.generator_losses(real_a, real_b, model.gen_ba(real_b), model.gen_ab(real_a))
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    return sum(p.grad.abs().sum().item() for p in [*model.gen_ab.parameters(), *model.gen_ba.parameters()]
               if p.grad is not None)


def test_identity_loss_off_gives_no_gradient():
    assert _generator_grad(tiny_cyclegan(lambda_cycle=0.0, lambda_idt=5.0)) > 0  # on: the identity term pulls G and F
    model = tiny_cyclegan(lambda_cycle=0.0, lambda_idt=0.0)
    real_a, real_b = _unit(unpaired_batch())
    assert "loss_idt" not in model.generator_losses(real_a, real_b, model.gen_ba(real_b), model.gen_ab(real_a))
    assert _generator_grad(model) == 0


def test_train_step_reads_only_a_and_b():
    batch = unpaired_batch()
    results = []
    for extra in ({}, {"y_a": batch["y_a"].flip(0), "y_b": -batch["y_b"], "y": torch.arange(4)}):
        model = tiny_cyclegan()
        opt = model.configure_optimizers()
        torch.manual_seed(3)
        out = model.train_step({"a": batch["a"], "b": batch["b"], **extra}, opt)
        results.append((out, [p.detach().clone() for p in model.parameters()]))
    (out0, w0), (out1, w1) = results
    assert all(torch.equal(out0[k], out1[k]) for k in out0)
    assert all(torch.equal(p, q) for p, q in zip(w0, w1))


def test_paper_defaults():
    cfg = Config()
    assert (cfg.lambda_cycle, cfg.lambda_idt, cfg.pool_size, cfg.beta1) == (10.0, 5.0, 50, 0.5)
    assert cyclegan.Model.dataset == "unpaired"


def test_extra_scores_both_directions():
    judge = tiny_evaluator(width=2, features=4)
    model = tiny_cyclegan()
    batch = unpaired_batch(16)
    test = {"a": batch["a"], "b": batch["b"], "y": batch["y_a"]}
    scores = model.extra_scores({"train": batch, "val": test, "test": test}, judge)
    assert set(scores) == {f"{m}_{d}" for m in ("accuracy", "l1", "psnr", "ssim", "fd") for d in ("ab", "ba")}
    assert 0 <= scores["accuracy_ab"] <= 1 and scores["l1_ab"] > 0 and scores["l1_ba"] > 0
    assert model.training  # translate_all restored the mode
