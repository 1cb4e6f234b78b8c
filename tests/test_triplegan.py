"""Triple-GAN: C's and G's steps (after D's), labels only from the attached subset, the pseudo-label warm-up, balanced
class-conditional samples, and the stage on tiny data."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch
from helpers import record_steps, same, weights

from genzoo.data.loading import load_split
from genzoo.models import triplegan
from genzoo.stages.triplegan import summarize, triplegan_stage

SHAPE, CLASSES = (1, 28, 28), 10


pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(**changes) -> triplegan.Config:
    base = dict(epochs=1, batch_size=20, labelled_batch=10, seeds=[0], noise_dim=8, gen_width=16,
                disc_widths=[32, 16], c_width=4, pseudo_warmup=2)
    return triplegan.Config(**{**base, **changes})


def model_with_labels(seed=0, **changes) -> triplegan.Model:
    torch.manual_seed(seed)
    model = triplegan.Model(small_config(**changes), SHAPE, CLASSES).train()
    gen = torch.Generator().manual_seed(100 + seed)
    model.attach_labelled((torch.rand(20, *SHAPE, generator=gen) * 255).to(torch.uint8), torch.arange(20) % CLASSES)
    return model


def unlabelled(n=20, seed=0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(200 + seed)
    return {"x": (torch.rand(n, *SHAPE, generator=gen) * 255).to(torch.uint8)}


def test_c_and_g_steps_each_leave_the_other_still():
    """C's step moves C and not G, G's step G and not C (D's part of the order, D first and left alone afterwards,
    is checked with the other adversarial models in tests/test_adversarial.py)."""
    model = model_with_labels()
    opts = model.configure_optimizers()
    moved = {}
    at_start = {"cls": weights(model.cls), "gen": weights(model.gen)}
    before = {}
    record_steps(opts, before=lambda name: before.update(cls=weights(model.cls), gen=weights(model.gen)),
                 after=lambda name: moved.update({name: {net for net in ("cls", "gen")
                                                         if not same(before[net], weights(getattr(model, net)))}}))
    model.train_step(unlabelled(), opts)
    assert moved == {"disc": set(), "cls": {"cls"}, "gen": {"gen"}}
    assert not same(at_start["cls"], weights(model.cls)) and not same(at_start["gen"], weights(model.gen))
    assert int(model.steps) == 1


def test_d_step_sees_c_before_its_update():
    """The (x_u, ŷ) pairs D is trained on carry the labels of C as it was at the start of the step."""
    model = model_with_labels(c_dropout=0.0)  # C in train mode is then deterministic (BatchNorm: batch statistics)
    opts = model.configure_optimizers()
    seen = []
    original = model.criticize

    def spy(x01, y):
        seen.append(y.detach().clone())
        return original(x01, y)

    model.criticize = spy
    x = unlabelled()
    with torch.no_grad():
        expected = model.classify(x["x"].float() / 255).argmax(1)
    model.train_step(x, opts)
    assert torch.equal(seen[1], torch.nn.functional.one_hot(expected, CLASSES).float())  # D's second pair: (x_u, C)


def test_supervised_loss_reads_only_the_attached_labels():
    """The supervised loss is computed on the labelled subset: it has no gradient w.r.t. the unlabelled batch,
    labels put in the engine's batch change nothing, and other attached labels do change it."""
    x = unlabelled()
    losses = []
    for batch in (x, {**x, "y": torch.arange(20) % CLASSES}, {**x, "y": torch.zeros(20, dtype=torch.long)}):
        model = model_with_labels()
        losses.append(model.train_step(batch, model.configure_optimizers())["loss_c_sup"])
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], losses[2])

    model = model_with_labels()
    model.attach_labelled(model.labelled_x, (model.labelled_y + 3) % CLASSES)  # the same images, other labels
    other = model.train_step(x, model.configure_optimizers())["loss_c_sup"]
    assert not torch.equal(other, losses[0])

    model = model_with_labels()
    x01 = (x["x"].float() / 255).requires_grad_(True)
    real_x_l, real_y_l = model.labelled_batch()
    loss_c_sup = torch.nn.functional.cross_entropy(model.classify(real_x_l), real_y_l)
    model.classify(x01)  # C also runs on the unlabelled images, as in the step
    grad = torch.autograd.grad(loss_c_sup, [x01], allow_unused=True)[0]
    assert grad is None or not grad.any()
    assert "labelled_x" not in model.state_dict() and "labelled_y" not in model.state_dict()


def test_training_without_labels_attached_is_refused():
    torch.manual_seed(0)
    model = triplegan.Model(small_config(), SHAPE, CLASSES)
    try:
        model.train_step(unlabelled(), model.configure_optimizers())
    except RuntimeError as err:
        assert "attach_labelled" in str(err)
    else:
        raise AssertionError("a step without a labelled set must fail")


def test_pseudo_label_loss_is_off_before_the_warm_up_and_on_after():
    model = model_with_labels(pseudo_warmup=2, pseudo_weight=1.0)
    opts = model.configure_optimizers()
    outs = [model.train_step(unlabelled(seed=s), opts) for s in range(4)]
    assert [float(o["pseudo_on"]) for o in outs] == [0.0, 0.0, 1.0, 1.0]
    for o in outs:  # loss_c = sup + α adv + w_ent ent + on * w_p pseudo
        cfg = model.config
        rest = o["loss_c_sup"] + cfg.alpha * o["loss_c_adv"] + cfg.entropy_weight * o["loss_c_ent"]
        assert torch.allclose(o["loss_c"], rest + o["pseudo_on"] * o["loss_c_pseudo"], atol=1e-5)
        assert float(o["loss_c_pseudo"]) > 0.1  # the pseudo-label loss exists; it is only switched
    # with the term weighted 0 instead, the same steps: identical before the warm-up (the switch is off), and at
    # the warm-up a loss_c smaller by exactly the pseudo-label term
    model = model_with_labels(pseudo_warmup=2, pseudo_weight=0.0)
    opts = model.configure_optimizers()
    unweighted = [model.train_step(unlabelled(seed=s), opts) for s in range(3)]
    assert all(torch.equal(unweighted[s]["loss_c"], outs[s]["loss_c"]) for s in (0, 1))
    torch.testing.assert_close(unweighted[2]["loss_c"], outs[2]["loss_c"] - outs[2]["loss_c_pseudo"])

    # the switch is a weight: with the warm-up passed, C's gradient includes R_P
    def c_grad(warmup):
        model = model_with_labels(pseudo_warmup=warmup, pseudo_weight=1.0, lr_c=1e-12)
        model.train_step(unlabelled(), model.configure_optimizers())
        return torch.cat([p.grad.flatten() for p in model.cls.parameters()])

    assert torch.equal(c_grad(5), c_grad(10))
    assert not torch.allclose(c_grad(0), c_grad(5))


def test_gs_images_reach_cs_running_statistics_only_once_the_pseudo_label_term_trains_c():
    """C is tested with its BatchNorm running statistics: a forward of G's images whose loss is switched off (before
    the warm-up) must leave them as the digits made them. Two models that differ only in G take the same step;
    C's statistics agree before the warm-up and differ after it."""
    def c_statistics(warmup, g_scale):
        model = model_with_labels(pseudo_warmup=warmup, pseudo_weight=1.0)
        with torch.no_grad():
            for p in model.gen.parameters():
                p.mul_(g_scale)
        torch.manual_seed(5)
        model.train_step(unlabelled(), model.configure_optimizers())
        return [b.clone() for name, b in model.cls.named_buffers() if "running" in name]

    before = [c_statistics(10, scale) for scale in (1.0, 3.0)]
    assert all(torch.equal(a, b) for a, b in zip(*before))
    after = [c_statistics(0, scale) for scale in (1.0, 3.0)]
    assert not all(torch.equal(a, b) for a, b in zip(*after))


def test_sample_gives_balanced_classes_in_order():
    model = model_with_labels().eval()
    assert torch.equal(model.balanced_labels(20), torch.arange(10).repeat_interleave(2))
    assert torch.equal(model.balanced_labels(100), torch.arange(10).repeat_interleave(10))
    seen = []
    original = model.generate
    model.generate = lambda z, y: (seen.append(y), original(z, y))[1]
    x = model.sample(30)
    assert x.shape == (30, *SHAPE) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(seen[0], torch.arange(10).repeat_interleave(3))
    grid = model.class_style_grid(4)  # one row per class, one column per shared z
    assert grid.shape == (40, *SHAPE)
    assert not torch.allclose(grid[0], grid[4])  # same z, other class: another image
    pictures = model.pictures()
    assert pictures["class_conditional"][1] == 10 and pictures["labelled"][0].shape == (20, *SHAPE)


def test_stage_on_tiny_data_writes_finite_errors_for_every_seed(tiny_processed, tiny_params, tmp_path):
    config = small_config(epochs=2, batch_size=50, seeds=[0, 1], c_width=4, disc_widths=[32], gen_width=16)
    tiny_params.models["triplegan"] = config
    tiny_params.raw["triplegan"] = dataclasses.asdict(config)
    tiny_params.data.labelled_per_class = 2  # the tiny split has few digits of each class
    tiny_params.engine.log_every = 2
    summary = triplegan_stage(tiny_params, tiny_processed, tmp_path / "models", tmp_path / "metrics")
    written = json.loads((tmp_path / "metrics" / "triplegan.json").read_text())
    for key in ("triplegan", "baseline"):
        errors = written[key]["test_error"]
        assert len(errors) == 2 and all(0 <= e <= 1 for e in errors)
        assert written[key]["mean"] == pytest.approx(statistics.fmean(errors)) == summary[key]["mean"]
        assert written[key]["std"] == pytest.approx(statistics.stdev(errors))  # over the seeds (n - 1)
        assert written[key]["n"] == 2
    assert written["labelled"] == 20 and "0.91" in written["anchors"]
    assert written["trained_together"] == 2  # the seeds as copies in one fit (genzoo.engine.copies)
    assert written["test_images"] == len(load_split(tiny_processed, "test")["y"])  # the coverage a verdict reads
    assert (tmp_path / "models" / "triplegan" / "seed0.pt").exists()
    assert (tmp_path / "models" / "triplegan" / "seed1.pt").exists()
    assert (tmp_path / "metrics" / "figures" / "triplegan" / "class_conditional.png").exists()
    csv = (tmp_path / "metrics" / "plots" / "triplegan_train.csv").read_text().splitlines()
    assert "loss_c_sup" in csv[0] and len(csv) > 1


def test_one_seed_has_a_mean_and_no_spread():
    assert summarize([0.0897]) == {"test_error": [0.0897], "n": 1, "mean": 0.0897, "std": None}
    assert summarize([0.1, 0.3])["std"] == pytest.approx(statistics.stdev([0.1, 0.3]))


def test_classifier_adversarial_term_rewards_confidence_where_d_believes_the_pair():
    """The paper's log(1 - D) form: a pair D takes for real (large logit) pulls p_c(ŷ|x) up, a pair it rejects
    barely matters; the always-positive -log D form would pull every confidence down."""
    from genzoo.models.triplegan import classifier_adversarial_loss

    p_max = torch.tensor([0.5, 0.5], requires_grad=True)
    logits = torch.tensor([[6.0], [-6.0]])  # D: first pair real, second fake
    classifier_adversarial_loss(p_max, logits).backward()
    believed, rejected = p_max.grad.tolist()
    assert believed < -1.0  # minimizing raises the confidence of the believed pair
    assert abs(rejected) < 0.01 and rejected <= 0
