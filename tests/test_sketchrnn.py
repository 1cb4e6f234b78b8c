"""Sketch-RNN: the mixture NLL, which steps each loss counts, the KL floor, eta annealing, the masked
bidirectional encoder, decoding into valid stroke-5 (with a prefix), and determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from genzoo.engine.training import seed_everything
from genzoo.models import sketchrnn

T = 12


def tiny_sketchrnn(seed=0, **changes) -> sketchrnn.Model:
    config = dataclasses.replace(sketchrnn.Config(), enc_hidden=8, dec_hidden=16, latent_dim=4, mixtures=3,
                                 **changes)
    torch.manual_seed(seed)
    return sketchrnn.Model(config)


def strokes_batch(n=6, seed=0, t=T):
    """Random stroke-5 sketches in pixels: lengths 3..t-1, pen down/up at random, end rows after."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, t, (n,), generator=gen)
    s = torch.zeros(n, t, 5)
    s[..., :2] = 3 * torch.randn(n, t, 2, generator=gen)
    pen = (torch.rand(n, t, generator=gen) < 0.2).long()  # 1 = lift
    s[..., 2:] = torch.nn.functional.one_hot(pen, 3).float()
    pad = torch.arange(t)[None] >= lengths[:, None]
    s[pad] = torch.tensor([0, 0, 0, 0, 1.0])
    return {"strokes": s, "length": lengths, "y": torch.arange(n) % 10, "digit": torch.arange(n) % 10}


def test_lengths_of_counts_rows_before_the_first_end_row():
    b = strokes_batch()
    assert torch.equal(sketchrnn.lengths_of(b["strokes"]), b["length"])


def test_mixture_nll_matches_a_hand_computation():
    # one component: mu = (1, -1), sigma = (2, 0.5), rho = 0.5, at (dx, dy) = (2, 0)
    rho = 0.5
    params = torch.tensor([0.3, 1.0, -1.0, math.log(2.0), math.log(0.5), math.atanh(rho)])
    nx, ny = (2 - 1) / 2, (0 + 1) / 0.5
    z = nx ** 2 + ny ** 2 - 2 * rho * nx * ny
    expected = -z / (2 * (1 - rho ** 2)) - math.log(2 * math.pi * 2 * 0.5 * math.sqrt(1 - rho ** 2))
    got = sketchrnn.mixture_log_prob(params, torch.tensor([2.0, 0.0]))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # two components with the same Gaussian: the mixture weights must sum to one, whatever the logits
    two = torch.stack([params, params], -1).flatten()  # [pi, pi, mu_x, mu_x, ...]
    two[1] = -2.0
    assert sketchrnn.mixture_log_prob(two, torch.tensor([2.0, 0.0])).item() == pytest.approx(expected, rel=1e-5)


def test_offset_loss_counts_real_points_only_and_pen_loss_every_step_in_training():
    model = tiny_sketchrnn()
    b = strokes_batch()
    torch.manual_seed(1)
    base = model.losses(b["strokes"])
    changed = b["strokes"].clone()
    row = 0
    last = T - 1  # always a padded (end) row: lengths < T
    changed[row, last, :2] = torch.tensor([5.0, -7.0])  # a padded row's offset
    torch.manual_seed(1)
    after = model.losses(changed)
    # the offset of a padded row is no target of L_s; and it is the decoder's input after the last step only
    assert after["l_s"].item() == pytest.approx(base["l_s"].item(), abs=1e-6)
    # the pen of a padded row after the first end row (the shortest sketch's last row): a target of L_p in
    # training (the model learns to stop), not held out
    changed = b["strokes"].clone()
    row = int(b["length"].argmin())
    assert b["length"][row] < last
    changed[row, last, 2:] = torch.tensor([1.0, 0, 0])
    for train, counts in ((True, True), (False, False)):
        torch.manual_seed(1)
        before = model.losses(b["strokes"], train=train)
        torch.manual_seed(1)
        after = model.losses(changed, train=train)
        assert (after["l_p"].item() != pytest.approx(before["l_p"].item(), abs=1e-6)) == counts, train
    # L_p sums over N_max steps (training) or the real points (held out), divided by N_max: one row of uniform
    # logits costs log(3) / N_max per step counted
    n_max = T
    model.head.weight.data.zero_()
    model.head.bias.data.zero_()
    torch.manual_seed(1)
    assert model.losses(b["strokes"], train=True)["l_p"].item() == pytest.approx(math.log(3), rel=1e-5)
    torch.manual_seed(1)
    uniform = model.losses(b["strokes"])
    held_out = math.log(3) * (b["length"].float() / n_max).mean().item()
    assert uniform["l_p"].item() == pytest.approx(held_out, rel=1e-5)
    assert uniform["l_r"].item() == pytest.approx(uniform["l_s"].item() + uniform["l_p"].item(), rel=1e-6)
    # with a zero head every real offset costs -log N(x | 0, I); padding adds nothing
    s = b["strokes"] / torch.tensor([model.config.offset_scale] * 2 + [1, 1, 1])
    real = torch.arange(T)[None] < b["length"][:, None]
    per = (0.5 * (s[..., :2] ** 2).sum(-1) + math.log(2 * math.pi)) * real
    assert uniform["l_s"].item() == pytest.approx((per.sum(1) / n_max).mean().item(), rel=1e-5)


def test_kl_floor_gives_no_gradient_below_kl_min():
    cfg = sketchrnn.Config(kl_min=0.2)
    mu = torch.full((2, 4), 0.1, requires_grad=True)
    sigma_hat = torch.zeros(2, 4, requires_grad=True)
    l_kl = sketchrnn.kl_term(mu, sigma_hat).mean()  # 0.005 < 0.2
    assert l_kl.item() == pytest.approx(0.005)
    l_kl.clamp(min=cfg.kl_min).backward()
    assert (mu.grad == 0).all() and (sigma_hat.grad == 0).all()
    mu2 = torch.full((2, 4), 1.0, requires_grad=True)  # above the floor: a gradient
    sketchrnn.kl_term(mu2, torch.zeros(2, 4)).mean().clamp(min=cfg.kl_min).backward()
    assert (mu2.grad != 0).all()


def test_train_step_respects_the_kl_floor():
    model = tiny_sketchrnn(kl_min=1e6, random_scale=0.0)  # KL always under the floor: its term is a constant
    b = strokes_batch()
    opt = model.configure_optimizers()
    torch.manual_seed(0)
    out = model.train_step(b, opt)
    assert out["l_kl"].item() < 1e6
    assert out["loss"].item() == pytest.approx(out["l_r"].item() + 0.5 * 0.01 * 1e6, rel=1e-5)  # w_KL eta KL_min


def test_eta_anneals_from_eta_min_towards_one():
    model = tiny_sketchrnn(eta_min=0.01, eta_rate=0.99995)
    assert model.eta().item() == pytest.approx(0.01)
    model.steps.fill_(10000)
    assert model.eta().item() == pytest.approx(1 - 0.99 * 0.99995 ** 10000, rel=1e-5)
    opt = model.configure_optimizers()
    model.steps.zero_()
    etas = [model.train_step(strokes_batch(seed=i), opt)["eta"].item() for i in range(3)]
    assert etas == pytest.approx([1 - 0.99 * 0.99995 ** k for k in range(3)], abs=1e-7)
    assert model.steps.item() == 3


def test_encoder_is_masked_and_bidirectional():
    """Equals nn.LSTM(bidirectional=True) run on the real rows alone (packed), so it depends on both ends and
    not on padding."""
    model = tiny_sketchrnn()
    b = strokes_batch(4, seed=3)
    s = model.normalize(b["strokes"])
    ref = torch.nn.LSTM(5, 8, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, name).copy_(getattr(model.enc_fwd, name))
            getattr(ref, name + "_reverse").copy_(getattr(model.enc_bwd, name))
    packed = torch.nn.utils.rnn.pack_padded_sequence(s, b["length"], batch_first=True, enforce_sorted=False)
    h_n = ref(packed)[1][0]  # (2, B, H)
    expected = model.to_latent(torch.cat([h_n[0], h_n[1]], -1)).chunk(2, -1)[0]
    mu, _ = model.encode(b["strokes"])
    torch.testing.assert_close(mu, expected, rtol=1e-5, atol=1e-6)
    changed = b["strokes"].clone()
    changed[:, -1, :2] = 9.0  # padding only
    torch.testing.assert_close(model.encode(changed)[0], mu)


def assert_valid_stroke5(s):
    pen = s[..., 2:]
    assert ((pen == 0) | (pen == 1)).all() and (pen.sum(-1) == 1).all()
    ended = pen[..., 2].cumsum(1) > 0
    assert ended[:, -1].all()
    torch.testing.assert_close(s[ended], torch.tensor([0, 0, 0, 0, 1.0]).expand(int(ended.sum()), 5))


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_decode_returns_valid_stroke5(tau):
    model = tiny_sketchrnn()
    torch.manual_seed(0)
    s = model.decode(model.prior(7, "cpu"), T, tau)
    assert s.shape == (7, T, 5)
    assert_valid_stroke5(s)
    assert (sketchrnn.lengths_of(s) < T).all()


def test_decode_keeps_the_prefix():
    model = tiny_sketchrnn()
    b = strokes_batch(5, seed=2)
    keep = torch.tensor([1, 2, 3, 2, 1])
    torch.manual_seed(0)
    s = model.decode(model.prior(5, "cpu"), T, 1.0, b["strokes"], keep)
    assert_valid_stroke5(s)
    for i, k in enumerate(keep.tolist()):
        torch.testing.assert_close(s[i, :k], b["strokes"][i, :k])
    assert not torch.allclose(s[:, 3:6], b["strokes"][:, 3:6])  # after the prefix: the model's own rows


def test_train_step_changes_weights_and_is_deterministic_with_a_seed():
    def run():
        seed_everything(0)
        model = tiny_sketchrnn()
        opt = model.configure_optimizers()
        outs = [model.train_step(strokes_batch(seed=i), opt) for i in range(3)]
        return model, outs

    (m1, o1), (m2, o2) = run(), run()
    for k in ("loss", "l_r", "l_s", "l_p", "l_kl", "eta"):
        assert all(torch.isfinite(o[k]) for o in o1)
        assert [o[k].item() for o in o1] == [o[k].item() for o in o2]
    fresh = tiny_sketchrnn()
    assert any(not torch.equal(p, q) for p, q in zip(m1.parameters(), fresh.parameters()))
    torch.manual_seed(5)
    a = m1.decode(m1.prior(3, "cpu"), T, 0.7)
    torch.manual_seed(5)
    assert torch.equal(a, m2.decode(m2.prior(3, "cpu"), T, 0.7))


def test_gradients_are_clipped():
    model = tiny_sketchrnn(grad_clip=1e-3, lr=1.0)
    opt = model.configure_optimizers()
    opt["model"].step = lambda: None  # keep the gradients to look at them
    model.train_step(strokes_batch(), opt)
    assert max(p.grad.abs().max().item() for p in model.parameters()) <= 1e-3 + 1e-9


def test_pictures_and_extra_scores():
    pytest.importorskip("genzoo.data.strokes")
    model = tiny_sketchrnn(score_rows=5).eval()
    b = strokes_batch(16, seed=4, t=10)
    torch.manual_seed(0)
    grids = model.pictures(b)
    assert set(grids) == {"reconstructions", "interpolation", "completions", "samples"}
    for images, nrow in grids.values():
        assert images.shape[1:] == (1, 28, 28) and len(images) % nrow == 0
        assert images.min() >= 0 and images.max() <= 1

    class Evaluator:
        def predict(self, x):
            return torch.zeros(len(x), dtype=torch.long)

    b["digit"][:3] = -1  # QuickDraw rows: not scored by the evaluator
    b["digit"][3:5] = torch.tensor([0, 4])
    scores = model.extra_scores({"train": b, "val": b, "test": b}, Evaluator())
    assert set(scores) >= {"test_l_r", "test_l_s", "test_l_p", "test_l_kl", "reconstruction_accuracy",
                           "original_accuracy"}
    assert scores["original_accuracy"] == pytest.approx(1 / 2)  # rows 3, 4 scored (digits 0, 4); it says 0
    assert not model.samples and model.dataset == "strokes"
