"""StackGAN: the conditioning augmentation's KL, the matching-aware discriminator's three kinds of pairs, stage II
never changing stage I, each of the joint embedding's, D's and G's steps changing only its own part, and the
auxiliary attribute classifier. (Its captions set: tests/test_captions.py; D before G, G through a frozen D:
tests/test_adversarial.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import captions_batch, same, weights

from genzoo.data import captions as cap
from genzoo.models import stackgan as sg

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_stackgan(seed: int = 0, **changes) -> sg.Model:
    config = dataclasses.replace(sg.Config(), z_dim=8, c_dim=4, text_dim=16, word_dim=8, g_width=8, d_width=8,
                                 d_text=8, res_blocks=1, **changes)
    torch.manual_seed(seed)
    return sg.Model(config)


# ---------------------------------------------------------------- the model's pieces


def test_ca_kl_is_zero_at_the_prior_and_its_gradient_points_there():
    zeros = torch.zeros(5, 4)
    assert sg.kl_loss(zeros, zeros).item() == 0.0
    mu = torch.full((5, 4), 0.5, requires_grad=True)
    log_sigma = torch.full((5, 4), -0.3, requires_grad=True)
    kl = sg.kl_loss(mu, log_sigma)
    assert kl.item() > 0
    kl.backward()
    assert (mu.grad > 0).all() and (log_sigma.grad < 0).all()  # descent moves mu to 0 and sigma up to 1
    closed = 0.5 * (0.25 + torch.exp(torch.tensor(-0.6)) - 1 + 0.6) * 4  # per row, summed over 4 dims
    torch.testing.assert_close(kl.detach(), closed)


def test_mismatched_captions_differ_from_the_right_ones():
    data = captions_batch(40)
    for key in ("y", "colour", "stroke"):  # row 1 shows row 0's digit, colour and stroke: a true match
        data[key] = data[key].clone()
        data[key][1] = data[key][0]
    torch.manual_seed(0)
    rolled, valid = sg.mismatch(data, 0.0)
    assert torch.equal(rolled, data["tokens"].roll(1, 0))
    assert valid[1] == 0 and valid.sum() == 39  # the true match is left out of the wrong pairs, no other row
    swapped, valid = sg.mismatch(data, 1.0)
    assert (valid == 1).all()
    for row in range(40):
        right, wrong = data["tokens"][row], swapped[row]
        changed = (right != wrong).nonzero().flatten()
        assert len(changed) == 1  # exactly one word: one attribute swapped within its block
        block = next(ids for ids in sg.BLOCKS if right[changed[0]].item() in ids)
        assert wrong[changed[0]].item() in block


def test_matching_aware_d_sees_three_kinds_of_pairs(monkeypatch):
    model, data = tiny_stackgan(), captions_batch(16)
    seen = []
    forward = sg.MatchingDiscriminator.forward

    def spy(self, x, phi):
        seen.append((self is model.disc["d1"], x.detach().clone(), phi.detach().clone()))
        return forward(self, x, phi)

    monkeypatch.setattr(sg.MatchingDiscriminator, "forward", spy)
    model.d_step(data, model.configure_optimizers())
    d1 = [s for s in seen if s[0]]
    assert len(d1) == 3  # real + right, real + wrong, fake + right
    (_, real, phi), (_, real_again, phi_wrong), (_, fake, phi_again) = d1
    assert torch.equal(real, real_again) and not torch.equal(real, fake)
    assert torch.equal(phi, phi_again) and not torch.equal(phi, phi_wrong)
    logits = torch.zeros(4)
    full = sg.matching_d_loss(logits, logits + 3, logits, torch.ones(4))
    dropped = sg.matching_d_loss(logits, logits + 3, logits, torch.zeros(4))
    assert full > dropped  # a confident "real" on wrong pairs is penalised unless the pair truly matches


def test_stage_two_loss_never_reaches_stage_one():
    model, data = tiny_stackgan(), captions_batch(16)
    out = model.g_losses(data)
    stage1 = list(model.gen["g1"].parameters()) + list(model.gen["ca1"].parameters())
    grads = torch.autograd.grad(out["loss_g2"], stage1, allow_unused=True)
    assert all(g is None or (g == 0).all() for g in grads)
    grads2 = torch.autograd.grad(out["loss_g2"], list(model.gen["g2"].parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads2)
    grads1 = torch.autograd.grad(out["loss_g1"], stage1, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads1)


def test_each_step_updates_only_its_own_part():
    """The joint embedding's step trains only the text and image encoders, D's step only D1 and D2, G's step
    only G1, G2 and the CA layers (G's BatchNorm statistics move when D's step draws fakes: not weights); no
    gradient of D's or G's loss reaches the text encoder."""
    model, data = tiny_stackgan(), captions_batch(16)
    opt = model.configure_optimizers()
    parts = {"text": model.text, "disc": model.disc, "gen": model.gen}
    for step, owner in ((model.text_step, "text"), (model.d_step, "disc"), (model.g_step, "gen")):
        before = {name: weights(part) for name, part in parts.items()}
        model.text.zero_grad(set_to_none=True)
        step(data, opt)
        for name, part in parts.items():
            assert same(weights(part), before[name]) == (name != owner), (step.__name__, name)
        if owner != "text":  # D's and G's losses never reach the text space
            assert all(p.grad is None for p in model.text.parameters()), step.__name__


def test_joint_embedding_loss_rewards_matching_pairs_and_treats_same_captions_alike():
    attrs = torch.tensor([[1, 0, 0], [2, 0, 0], [3, 1, 2], [1, 0, 0]])  # rows 0 and 3 say the same thing
    image = torch.eye(4)[[0, 1, 2, 0]]  # rows 0 and 3 are the same image too
    text = image.clone()
    aligned = sg.joint_embedding_loss(image, text, attrs, temperature=0.05)
    assert aligned < 0.8  # each pick is right; ln 2 at most, for the two rows with two right answers
    swapped_same = sg.joint_embedding_loss(image, text[[3, 1, 2, 0]], attrs, temperature=0.05)
    assert torch.allclose(aligned, swapped_same)  # exchanging two captions that mean the same changes nothing
    mismatched = sg.joint_embedding_loss(image, text[[1, 0, 2, 3]], attrs, temperature=0.05)
    assert mismatched > aligned + 5


def test_phi_is_the_captions_direction_at_unit_scale_per_dimension():
    model = tiny_stackgan()
    phi = model.encode(captions_batch(8)["tokens"])
    assert torch.allclose(phi.norm(dim=1), torch.full((8,), model.config.text_dim ** 0.5))


def test_train_step_is_finite_and_generate_has_the_right_shapes_and_range():
    model, data = tiny_stackgan(swap_fraction=0.5), captions_batch(16)
    opt = model.configure_optimizers()
    for _ in range(2):
        out = model.train_step(data, opt)
    assert all(torch.isfinite(v) for v in out.values())
    assert {"loss_d1", "loss_d2", "loss_g1", "loss_g2", "kl1", "kl2"} <= set(out)
    model.eval()
    s1, s2 = model.generate(data["tokens"][:5])
    assert s1.shape == (5, 3, 14, 14) and s2.shape == (5, 3, 28, 28)
    assert 0 <= s1.min() and s1.max() <= 1 and 0 <= s2.min() and s2.max() <= 1
    assert not model.samples and model.dataset == "captions"
    torch.manual_seed(0)
    shown = model.output({"tokens": data["tokens"][:5]})  # its one output: stage II for the captions
    torch.manual_seed(0)
    assert torch.equal(shown, model.generate(data["tokens"][:5])[1])


def test_changing_the_caption_changes_the_output():
    model = tiny_stackgan().eval()
    z = torch.randn(2, model.config.z_dim)
    red = cap.tokenize("a thick red seven").expand(2, -1)
    blue = cap.tokenize("a thick blue seven").expand(2, -1)
    torch.manual_seed(0)
    a1, a2 = model.generate(red, z)
    torch.manual_seed(0)
    b1, b2 = model.generate(blue, z)
    torch.manual_seed(0)
    c1, c2 = model.generate(red, z)
    assert torch.equal(a2, c2)  # same caption, z and CA noise: the same image
    assert not torch.allclose(a1, b1) and not torch.allclose(a2, b2)


def test_pictures_are_named_unit_range_grids():
    model, data = tiny_stackgan(), captions_batch(24)
    grids = model.pictures(data)
    assert set(grids) == {"captions", "stages", "real"}
    for images, nrow in grids.values():
        assert images.ndim == 4 and images.shape[1] == 3 and nrow >= 1
        assert 0 <= images.min() and images.max() <= 1
    assert grids["stages"][0].shape == (40, 3, 28, 28)


# ---------------------------------------------------------------- the auxiliary attribute classifier (TAC-GAN)


def test_attribute_loss_is_low_for_right_readings_and_high_for_wrong_ones():
    attrs = torch.tensor([[7, 0, 2], [1, 2, 0]])
    right = torch.full((2, sum(sg.ATTRIBUTE_SIZES)), -10.0)
    offsets = torch.tensor([0, *torch.tensor(sg.ATTRIBUTE_SIZES).cumsum(0)[:-1].tolist()])
    right.scatter_(1, attrs + offsets, 10.0)  # each block's logit of the true value is high
    wrong = right.clone()
    wrong[:, :10] = right[:, :10].roll(1, 1)  # the digit read as the next one
    assert sg.attribute_loss(right, attrs) < 1e-3
    assert sg.attribute_loss(wrong, attrs) > 19  # one confident miss costs ~20 nats


def test_auxiliary_classifier_exists_only_when_its_loss_is_on_and_learns_from_real_images():
    assert tiny_stackgan().disc["d2"].classify is None  # the paper's D: no extra head, no extra parameters
    model, data = tiny_stackgan(aux_weight=1.0), captions_batch(32)
    opt = model.configure_optimizers()
    first = [model.d_step(data, opt)["loss_aux_d2"] for _ in range(40)]
    assert first[-1] < 0.5 * first[0]  # D's head learns to read the real images' digit, colour and stroke
    head = model.disc["d2"].classify.weight
    out = model.g_losses(data)  # G's aux loss reaches G through D's head; G's step leaves the head alone
    grads = torch.autograd.grad(out["loss_aux_g2"], list(model.gen["g2"].parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert {"loss_aux_g1", "loss_aux_g2"} <= set(model.train_step(data, opt))
    d_before = head.detach().clone()
    model.g_step(data, opt)
    assert torch.equal(head, d_before)
