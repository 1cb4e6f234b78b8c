"""Triple-GAN's paper recipe (pipeline/conf/recipes.yaml, `paper: triplegan:`): the moving average of C, the update
order D, G, C, the per-epoch lr decay, C's pre-training (as copies, paused and resumed), the baseline's matching
history, and the stage run as a part by pipeline/gpu_models.py, recorded as the paper's recipe for the report and
listed by pipeline/gpu_plan.py. Their defaults leave ours as it was (tests/test_triplegan.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import record_steps, same, weights
from test_triplegan import model_with_labels, small_config, unlabelled

from genzoo.engine.copies import Copies
from genzoo.engine.errors import GenzooError, Interrupted
from genzoo.engine.training import _schedule, fit
from genzoo.models import triplegan
from genzoo.models.registry import load_model, save_model
from genzoo.params import EngineParams, TrainConfig
from genzoo.stages import triplegan as stage

SHAPE, CLASSES = (1, 28, 28), 10
ENGINE = EngineParams(device="cpu", precision="fp32", log_every=2, eval_every=100, checkpoint_every=100,
                      threads=1)  # bit-exact equality needs one thread count throughout
SCRIPT_SMALL = dict(pretrain_batch=60, pretrain_lr=3e-4, pretrain_beta1=0.9, pretrain_entropy_weight=0.3,
                    pretrain_balance_weight=0.3, unlabelled="train+val", disc_style="script", disc_labelled_batch=1,
                    disc_real_unlabelled=8, c_adversarial="nonsaturating", noise="uniform01", gen_batch=30,
                    labelled_draw="cycle", balance_weight=1e-3, c_weight_decay=1e-4)  # the script's pieces, small

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_moving_average_of_c_follows_every_c_step_in_place_and_is_what_is_tested(tmp_path):
    model = model_with_labels(ema_decay=0.9)
    start = {k: v.clone() for k, v in model.cls_ema.state_dict().items()}
    assert same(start, {k: v.clone() for k, v in model.cls.state_dict().items()})  # from C's initial weights
    where = [t.data_ptr() for t in model.cls_ema.state_dict().values()]
    model.train_step(unlabelled(), model.configure_optimizers())
    live = model.cls.state_dict()
    for key, value in model.cls_ema.state_dict().items():  # weights and BatchNorm's running statistics alike
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * start[key] + 0.1 * live[key])
        else:  # BatchNorm's batch count: copied
            assert torch.equal(value, live[key])
    assert [t.data_ptr() for t in model.cls_ema.state_dict().values()] == where  # in place: what a CUDA graph holds
    assert not any(p.requires_grad for p in model.cls_ema.parameters())

    x = unlabelled(seed=3)["x"]
    for label in (3, 7):  # an average that calls everything `label`: predict and validate read it, not C
        with torch.no_grad():
            model.cls_ema[-1].bias.fill_(0)
            model.cls_ema[-1].bias[label] = 1e4
        assert (model.predict(x) == label).all()
    scores = model.validate({"x": x, "y": torch.full((len(x),), 7)})
    assert float(scores["error_c"]) == 0 and "error_c_live" in scores
    save_model(model, "triplegan", tmp_path / "seed0.pt")  # saved with the model, loaded back with it
    loaded = load_model(tmp_path / "seed0.pt")
    assert torch.equal(loaded.predict(x), model.predict(x)) and any(k.startswith("cls_ema.") for k in
                                                                      loaded.state_dict())
    assert not any(k.startswith("cls_ema.") for k in model_with_labels().state_dict())  # off: as saved before


@pytest.mark.parametrize("order", ["dcg", "dgc"])
def test_the_update_order_and_the_fakes_c_learns_from(order):
    """dcg: C's pseudo-label loss on the fakes D saw, made before any update; dgc: G steps before C, and C's fakes
    are a fresh draw of the G just updated."""
    model = model_with_labels(update_order=order)
    opts = model.configure_optimizers()
    events = []
    stepped = record_steps(opts, after=lambda name: events.append(("step", name)))
    generate, step_c = model.generate, model._step_c

    def spy_generate(z, y):
        out = generate(z, y)
        events.append(("generate", out.detach().clone()))
        return out

    seen = {}

    def spy_step_c(real_x_u, real_x_l, real_y_l, fake_x, fake_y, opt):
        seen.update(fake_x=fake_x.clone(), at=len(events))
        return step_c(real_x_u, real_x_l, real_y_l, fake_x, fake_y, opt)

    model.generate, model._step_c = spy_generate, spy_step_c
    model.train_step(unlabelled(), opts)
    assert stepped == {"dcg": ["disc", "cls", "gen"], "dgc": ["disc", "gen", "cls"]}[order]
    made = [i for i, (kind, _) in enumerate(events[:seen["at"]]) if kind == "generate"][-1]  # C's fakes, made here
    assert torch.equal(events[made][1], seen["fake_x"])
    steps = [name for kind, name in events if kind == "step"]
    step_at = {name: [i for i, (kind, n) in enumerate(events) if kind == "step" and n == name][0] for name in steps}
    if order == "dcg":
        assert made < step_at["disc"]  # D's fakes, from the G of before this step
    else:
        assert made > step_at["gen"]  # after G's update


def test_the_exponential_schedule_decays_every_optimizer_per_epoch_past_its_start():
    """lr x lr_decay^max(0, e - lr_decay_start_epoch) in epoch e (from 0), for D, C and G, through fit()."""
    model = model_with_labels(lr=2e-3, lr_c=1e-3, epochs=6, batch_size=10, lr_schedule="exponential",
                              lr_decay=0.5, lr_decay_start_epoch=2)
    seen = []
    step = model.train_step
    model.train_step = lambda batch, opt: (seen.append({k: float(o.param_groups[0]["lr"]) for k, o in opt.items()}),
                                           step(batch, opt))[1]
    fit(model, unlabelled(20), config=model.config, engine=ENGINE, seed=0, progress=False)  # 2 steps an epoch
    assert len(seen) == 12
    for name, base in (("disc", 2e-3), ("cls", 1e-3), ("gen", 2e-3)):
        assert [row[name] for row in seen] == pytest.approx([base * 0.5 ** max(0, s // 2 - 2) for s in range(12)])
    with pytest.raises(GenzooError, match="lr_decay"):  # a section without the fields cannot ask for it
        _schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), "exponential", 10, 2, TrainConfig())
    with pytest.raises(ValueError, match="lr_schedule exponential"):  # a decay that would do nothing is refused
        model_with_labels(lr_decay=0.9)
    with pytest.raises(ValueError, match="ema_decay"):
        model_with_labels(ema_decay=1.0)


def test_pretraining_moves_c_alone_on_the_labelled_pairs_and_leaves_the_game_at_step_zero():
    model = model_with_labels(ema_decay=0.5, c_pretrain_epochs=2, lr_schedule="exponential", lr_decay=0.5)
    first = triplegan.Pretraining(model)
    assert (first.config.epochs, first.config.lr_schedule) == (2, "constant")  # its own length, a constant lr
    opts = first.configure_optimizers()
    assert list(opts) == ["cls"] and {id(p) for p in opts["cls"].param_groups[0]["params"]} == \
        {id(p) for p in model.cls.parameters()}
    before = {net: weights(getattr(model, net)) for net in ("cls", "gen", "disc", "cls_ema")}
    out = first.train_step({}, opts)  # the engine's batch is never read
    assert set(out) == {"loss_c_sup"} and int(model.steps) == 0
    moved = {net for net in before if not same(before[net], weights(getattr(model, net)))}
    assert moved == {"cls", "cls_ema"}


def test_pretraining_as_copies_equals_each_seed_pretrained_alone():
    seeds, data = [3, 5], unlabelled(40)

    def built(seed):
        return triplegan.Pretraining(model_with_labels(seed, c_pretrain_epochs=2, ema_decay=0.9, batch_size=10))

    apart = []
    for seed in seeds:
        first = built(seed)
        fit(first, data, config=first.config, engine=ENGINE, seed=seed, progress=False)
        apart.append(first.model)
    together = Copies([built(seed) for seed in seeds], seeds)
    result = fit(together, data, config=together.config, engine=ENGINE, seed=0, progress=False)
    assert result.steps == 8  # 2 epochs of the 40 images' 4 steps
    for alone, copy in zip(apart, together.copies):
        assert same(alone.state_dict(), copy.model.state_dict())


def test_the_paper_recipes_game_trains_as_copies_exactly_as_apart():
    """D, G, C with the moving average and the decay: the seeds trained together end as the seeds trained alone."""
    seeds, data = [3, 5], unlabelled(40)
    changes = dict(epochs=2, batch_size=10, ema_decay=0.9, update_order="dgc", lr_schedule="exponential",
                   lr_decay=0.5, lr_decay_start_epoch=0, **{k: v for k, v in SCRIPT_SMALL.items()
                                                            if not k.startswith("pretrain")})

    def built(seed):
        model = model_with_labels(seed, **changes)
        model.attach_unlabelled(data["x"])
        return model

    apart = []
    for seed in seeds:
        model = built(seed)
        fit(model, data, config=model.config, engine=ENGINE, seed=seed, progress=False)
        apart.append(model)
    together = Copies([built(seed) for seed in seeds], seeds)
    fit(together, data, config=together.config, engine=ENGINE, seed=0, progress=False)
    for alone, copy in zip(apart, together.copies):
        assert same(alone.state_dict(), copy.state_dict())


def test_the_baseline_gets_cs_pretraining_then_the_games_schedule_and_average(monkeypatch):
    made = []
    adam = stage.adam
    monkeypatch.setattr(stage, "adam", lambda *args, **kwargs: made.append(adam(*args, **kwargs)) or made[-1])
    x_l = (torch.rand(20, *SHAPE, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    y_l = torch.arange(20) % CLASSES
    config = small_config(ema_decay=0.9, lr_schedule="exponential", lr_decay=0.5, lr_decay_start_epoch=1)
    cls = stage.supervised_baseline(config, x_l, y_l, 6, 0, SHAPE, CLASSES, torch.device("cpu"), pretrain_steps=3,
                                    steps_per_epoch=2)
    assert [int(next(iter(opt.state.values()))["step"]) for opt in made] == [3, 6]  # its pre-training, the game's
    assert made[0].param_groups[0]["lr"] == config.lr_c  # the pre-training at a constant lr
    assert made[1].param_groups[0]["lr"] == pytest.approx(config.lr_c * 0.5 ** (6 // 2 - 1))
    assert not cls.training and not any(p.requires_grad for p in cls.parameters())  # the average, in eval mode
    made.clear()
    stage.supervised_baseline(small_config(), x_l, y_l, 4, 0, SHAPE, CLASSES, torch.device("cpu"))
    assert [int(next(iter(opt.state.values()))["step"]) for opt in made] == [4]  # ours: one Adam, as before


def test_the_stage_pretrains_then_plays_and_paused_twice_ends_as_one_run_through(tiny_processed, tiny_params, tmp_path,
                                                                                monkeypatch):
    """Paused in C's pre-training, then in the game (its steps counted after the pre-training's), then resumed past
    the pre-training from the game's checkpoint: the same models and numbers as one run straight through."""
    config = small_config(epochs=1, batch_size=50, seeds=[0, 1], disc_widths=[32, 16], c_pretrain_epochs=1,
                          ema_decay=0.9, update_order="dgc", lr_schedule="exponential", lr_decay=0.5, **SCRIPT_SMALL)
    tiny_params.models["triplegan"] = config
    tiny_params.raw["triplegan"] = dataclasses.asdict(config)
    tiny_params.data.labelled_per_class = 2
    tiny_params.engine.log_every = 2

    def run(name, **kwargs):
        return stage.triplegan_stage(tiny_params, tiny_processed, tmp_path / name / "models",
                                     tmp_path / name / "metrics", **kwargs)

    through = run("through")
    pretrain, game = through["c_pretrain_steps"], through["steps"]
    assert (through["unlabelled"], through["unlabelled_images"]) == ("train+val", 300)  # the 250 and the 50
    assert (pretrain, game) == (300 // 60, 300 // 50) and through["resumed_from"] == 0  # one epoch each
    assert through["baseline"]["n"] == 2 and through["final"]["train/steps_per_s"] > 0

    keep = tmp_path / "kept"
    with pytest.raises(Interrupted) as paused:
        run("paused", stop_at=time.monotonic(), checkpoints=keep)
    assert (paused.value.step, paused.value.total) == (1, pretrain + game)
    assert (keep / stage.CHECKPOINT).is_file()

    fits, real_fit = [], stage.fit

    def counted(*args, fingerprint, pause_game=False, **kwargs):  # which fits run: C's pre-training, the game
        fits.append(fingerprint.endswith("-pretrain"))
        if pause_game and not fits[-1]:
            kwargs["stop_at"] = time.monotonic()  # the game stops after its first step
        return real_fit(*args, fingerprint=fingerprint, **kwargs)

    monkeypatch.setattr(stage, "fit", lambda *args, **kwargs: counted(*args, pause_game=True, **kwargs))
    with pytest.raises(Interrupted) as paused:
        run("paused", checkpoints=keep)
    assert fits == [True, False] and (paused.value.step, paused.value.total) == (pretrain + 1, pretrain + game)

    fits.clear()
    monkeypatch.setattr(stage, "fit", counted)
    resumed = run("paused", checkpoints=keep)
    assert fits == [False] and resumed["resumed_from"] == pretrain + 1  # the game's checkpoint holds the pre-training
    assert not (keep / stage.CHECKPOINT).exists()
    for key in ("triplegan", "baseline"):
        assert resumed[key] == through[key]
    for seed in (0, 1):
        a, b = (torch.load(tmp_path / name / "models" / "triplegan" / f"seed{seed}.pt", weights_only=True)["state"]
                for name in ("through", "paused"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"seed {seed}"


SCRIPT = {  # what the paper recipe sets, each the authors' script's (pipeline/conf/recipes.yaml)
    "c_pretrain_epochs": 30, "pretrain_batch": 500, "pretrain_lr": 3e-4, "pretrain_beta1": 0.9,
    "pretrain_entropy_weight": 0.3, "pretrain_balance_weight": 0.3, "ema_decay": 0.99, "lr_schedule": "exponential",
    "lr_decay": 0.995, "lr_decay_start_epoch": 299, "update_order": "dgc", "unlabelled": "train+val",
    "disc_style": "script", "disc_labelled_batch": 1, "disc_real_unlabelled": 400, "c_adversarial": "nonsaturating",
    "noise": "uniform01", "gen_batch": 200, "labelled_draw": "cycle", "balance_weight": 1e-3, "c_weight_decay": 1e-4,
    "pseudo_warmup": 299 * 600}


def test_the_paper_recipe_is_the_authors_script_on_top_of_ours(tmp_path):
    from compose import compose
    from gpu_models import apply_recipe, load_recipes

    from genzoo.models.registry import parse_params

    composed = tmp_path / "gpu.yaml"
    compose(composed, ["profile=gpu"])
    raw = yaml.safe_load(composed.read_text())
    ours = parse_params(raw).model("triplegan")
    paper = parse_params(apply_recipe(raw, "paper", ["triplegan"], load_recipes())).model("triplegan")
    changed = {f.name: getattr(paper, f.name) for f in dataclasses.fields(ours)
               if getattr(ours, f.name) != getattr(paper, f.name)}
    assert changed == SCRIPT
    assert (paper.epochs, paper.batch_size, paper.labelled_batch, paper.lr, paper.lr_c, paper.beta1, paper.alpha,
            paper.pseudo_weight, paper.entropy_weight) == (1000, 100, 100, 1e-3, 1e-3, 0.5, 0.5, 0.1, 0.3)
    defaults = triplegan.Config()  # ours leaves every piece out (targets.yaml's ours_differs)
    assert {k: getattr(ours, k) for k in SCRIPT} == {k: getattr(defaults, k) for k in SCRIPT}
    assert (ours.c_pretrain_epochs, ours.disc_real_unlabelled, ours.gen_batch, ours.disc_style) == (0, 0, 0, "ours")


def test_the_scripts_d_has_unit_norm_relu_layers_and_reads_the_label_twice():
    torch.manual_seed(0)
    disc = triplegan.Discriminator(784, [32, 16, 8], CLASSES, 0.3, 0.5, style="script").eval()
    assert [layer.weight.shape[1] for layer in disc.hidden] == [784 + 10, 32 + 20, 16 + 10]  # y twice at layer 2
    assert disc.out.weight.shape[1] == 8 + 10
    x, y = torch.rand(6, 1, 28, 28), F.one_hot(torch.arange(6) % CLASSES, CLASSES).float()
    before = disc(x, y)
    with torch.no_grad():
        for layer in [*disc.hidden, disc.out]:  # a unit's gain is fixed: only its weights' direction counts
            layer.weight.mul_(torch.rand(layer.weight.shape[0], 1) * 5 + 0.1)
    torch.testing.assert_close(disc(x, y), before)
    h = disc.hidden[0](torch.cat([x.flatten(1), y], 1))
    unit = disc.hidden[0].weight / disc.hidden[0].weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(h, torch.cat([x.flatten(1), y], 1) @ unit.T + disc.hidden[0].bias)
    ours = triplegan.Discriminator(784, [32, 16, 8], CLASSES, 0.3, 0.5).eval()
    assert [layer.weight.shape[1] for layer in ours.hidden] == [794, 42, 26] and isinstance(ours.out, torch.nn.Linear)
    with pytest.raises(ValueError, match="disc_style"):
        triplegan.Discriminator(784, [32], CLASSES, 0.3, 0.5, style="maxout")


def test_ds_real_pairs_are_its_own_labelled_draw_and_unlabelled_digits_with_cs_labels():
    """disc_labelled_batch 1 and disc_real_unlabelled 6: D calls 7 pairs real, the last 6 digits drawn from the
    attached unlabelled set and labelled by C's argmax before C's update; G's pairs are gen_batch, balanced."""
    model = model_with_labels(disc_labelled_batch=1, disc_real_unlabelled=6, gen_batch=30, c_dropout=0.0)
    with pytest.raises(RuntimeError, match="attach_unlabelled"):
        model.train_step(unlabelled(), model.configure_optimizers())
    pool = unlabelled(50, seed=4)["x"]
    model.attach_unlabelled(pool)
    seen, judged, classify, criticize = [], [], model.classify, model.criticize

    def spy_classify(x):
        out = classify(x)
        seen.append((x.detach().clone(), out.detach().clone()))
        return out

    model.classify = spy_classify
    model.criticize = lambda x, y: judged.append((x.detach().clone(), y.detach().clone())) or criticize(x, y)
    model.train_step(unlabelled(), model.configure_optimizers())
    (real_x, real_y), (_, fake_c_y), (fake_g_x, fake_g_y) = judged[:3]
    assert len(real_x) == 7 and len(fake_c_y) == 20 and len(fake_g_x) == 30
    labelled_x = model.labelled_x.float() / 255
    assert any(torch.equal(real_x[0], image) for image in labelled_x)  # one labelled pair
    pooled = pool.float() / 255
    assert all(any(torch.equal(digit, image) for image in pooled) for digit in real_x[1:])
    labels = next(out for x, out in seen if x.shape[0] == 6 and torch.equal(x, real_x[1:])).argmax(1)
    assert torch.equal(real_y[1:].argmax(1), labels)  # C's argmax labels, called real
    assert torch.equal(fake_g_y.argmax(1), torch.arange(30) // 3)  # balanced over the classes


def test_the_cycle_walks_one_random_order_and_gives_every_pair_when_it_asks_for_all():
    model = model_with_labels(labelled_draw="cycle")
    order = model.labelled_order.clone()
    assert sorted(order.tolist()) == list(range(20)) and order.tolist() != list(range(20))
    drawn = torch.cat([model.labelled_batch(5)[1] for _ in range(4)])
    assert torch.equal(drawn, model.labelled_y[order])  # four draws of 5: the 20 pairs once, in the order
    for _ in range(3):
        x, y = model.labelled_batch(20)
        assert sorted(y.tolist()) == sorted(model.labelled_y.tolist())  # all of them, each draw
    assert torch.equal(model.labelled_batch(3)[1], model.labelled_y[order[:3]])  # round again from where it was
    again = model_with_labels(labelled_draw="cycle")
    assert torch.equal(again.labelled_order, order)  # the seed decides it


def test_the_scripts_c_terms_join_its_loss_and_the_noise_is_uniform_on_0_1():
    from genzoo.models.triplegan import class_balance, classifier_adversarial_loss

    p_max, logits = torch.tensor([0.9, 0.4]), torch.tensor([2.0, -1.0])
    assert float(classifier_adversarial_loss(p_max, logits, "nonsaturating")) == pytest.approx(
        float((p_max * F.softplus(-logits)).mean()))  # p (-log D)
    assert float(classifier_adversarial_loss(p_max, logits)) == pytest.approx(
        float((p_max * -F.softplus(logits)).mean()))  # p log(1 - D)
    assert float(class_balance(torch.full((4, CLASSES), 0.1))) == pytest.approx(math.log(CLASSES))
    assert float(class_balance(F.one_hot(torch.zeros(4, dtype=torch.long), CLASSES).float())) > 10  # one class only

    changes = dict(balance_weight=0.5, c_weight_decay=0.1)
    ours, script = model_with_labels(), model_with_labels(**changes)
    assert same(ours.state_dict(), script.state_dict())  # the fields change no weight
    decay = float(script.cls[-1].weight.detach().pow(2).sum())
    outs = []
    for model in (ours, script):
        torch.manual_seed(7)
        outs.append(model.train_step(unlabelled(), model.configure_optimizers()))
    assert float(outs[1]["loss_c"]) == pytest.approx(float(outs[0]["loss_c"]) + 0.5 * float(outs[1]["loss_c_balance"])
                                                     + 0.1 * decay, rel=1e-5)
    z = model_with_labels(noise="uniform01").noise(2000)
    assert 0 <= float(z.min()) and float(z.max()) <= 1 and float(z.mean()) == pytest.approx(0.5, abs=0.02)


def test_the_scripts_pretraining_reads_unlabelled_digits_with_its_own_adam():
    with pytest.raises(ValueError, match="pretrain_batch"):
        model_with_labels(c_pretrain_epochs=1, pretrain_entropy_weight=0.3)
    model = model_with_labels(c_pretrain_epochs=1, pretrain_batch=10, pretrain_lr=3e-4, pretrain_beta1=0.9,
                              pretrain_entropy_weight=0.3, pretrain_balance_weight=0.3, c_weight_decay=0.1)
    first = triplegan.Pretraining(model)
    assert first.config.batch_size == 10
    opt = first.configure_optimizers()["cls"]
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]) == (3e-4, (0.9, 0.999))
    with pytest.raises(KeyError):
        first.train_step({}, {"cls": opt})  # it reads the engine's batch now
    out = first.train_step(unlabelled(10), {"cls": opt})
    assert set(out) == {"loss_c_sup", "loss_c_ent", "loss_c_balance"} and int(model.steps) == 0


def test_a_paper_recipe_part_of_the_stage_pauses_resumes_and_is_judged_as_the_papers(tmp_path, tiny_params_file,
                                                                                      monkeypatch):
    """`gpu_models.py --recipe paper --checkpoints DIR triplegan`: paused in one window, finished in the next, its
    snapshot's triplegan.json records the recipe, and the report takes it for the paper's recipe."""
    import gpu_models

    from genzoo.stages.report import _triplegan, latest, open_run, summary
    from genzoo.targets import load_targets

    recipe = {"c_pretrain_epochs": 1, "ema_decay": 0.9, "update_order": "dgc", "lr_schedule": "exponential",
              "lr_decay": 0.5}  # the paper's pieces at the tiny profile's size
    monkeypatch.setattr(gpu_models, "load_recipes", lambda: {"paper": {"triplegan": recipe}})
    with pytest.raises(SystemExit, match="--checkpoints"):
        gpu_models.main(["triplegan", "--params", str(tiny_params_file), "--budget", "1", "--out", str(tmp_path)])
    keep = tmp_path / "carried"
    common = ["triplegan", "--recipe", "paper", "--params", str(tiny_params_file), "--work", str(tmp_path / "work"),
              "--checkpoints", str(keep)]
    assert gpu_models.main([*common, "--budget", "0", "--out", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "run.json").read_text())["models"]["triplegan"]
    total = first["total_steps"]
    assert first["paused_at"] == 1 < total and first["recipe"] == "paper"
    assert (keep / "paper" / stage.CHECKPOINT).is_file()  # a recipe's checkpoints in a folder of their own

    out = tmp_path / "metrics" / "gpu" / "triplegan_paper"
    assert gpu_models.main([*common, "--budget", "600", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    done = run["models"]["triplegan"]
    assert not run["failed"] and done["epochs"] == done["profile_epochs"] and done["recipe"] == "paper"
    assert [(r["from_step"], r["to_step"]) for r in done["runs"]] == [(0, 1), (1, total)]
    written = json.loads((out / "triplegan.json").read_text())
    assert written["recipe"] == "paper" and written["baseline"] is None and written["c_pretrain_steps"] > 0
    assert "triplegan" not in json.loads((out / "evaluate.json").read_text())["models"]
    used = yaml.safe_load((out / "params.yaml").read_text())["triplegan"]
    assert {k: used[k] for k in recipe} == recipe

    target = next(x for x in load_targets().targets if x.model == "triplegan")
    part = open_run("part `triplegan_paper`", out)
    verdict = part.judge(target)  # judged as the paper's recipe: here only off its protocol (the tiny data set)
    assert part.recipe(target) == "paper" and verdict.word == "off protocol" and not verdict.recipe
    assert latest([part], target, paper=True)[0] is part and latest([part], target, paper=False) is None
    row = next(line for line in summary(tmp_path / "metrics", [part], load_targets()) if line.startswith("| triplegan"))
    assert f"| paper: {100 * written['triplegan']['mean']:.2f} (off protocol" in row and "| pending |" in row  # ours
    assert "Baseline: not trained in this run" in "\n".join(_triplegan(out, load_targets()))


def test_the_plan_lists_the_stages_paper_recipe_as_a_part_and_runs_it(tmp_path, monkeypatch):
    import gpu_models
    from gpu_plan import main, plan, table

    params = {"run": {"profile": "gpu"}, "vae": {"epochs": 10, "batch_size": 100},
              "triplegan": {"epochs": 1000, "batch_size": 100}}
    recipes = {"paper": {"triplegan": {"c_pretrain_epochs": 30, "ema_decay": 0.99, "lr_schedule": "exponential",
                                       "lr_decay": 0.995, "unlabelled": "train+val"}}}
    targets = tmp_path / "targets.yaml"
    targets.write_text(yaml.safe_dump({"targets": [{"model": "triplegan", "profiles": ["gpu"], "against": "paper"}]}))
    metrics = tmp_path / "metrics"
    (metrics / "gpu").mkdir(parents=True)
    parts = {p.name: p for p in plan(params, metrics, targets, ["vae"], recipes)}
    paper = parts["triplegan@paper"]
    assert (paper.epochs, paper.steps_per_epoch, paper.targets, paper.state) == (1000, 600, 1, "pending")  # 60,000
    assert "triplegan" not in parts  # ours stays the DVC stage
    lines = table(list(parts.values()))
    assert any(line.startswith("| triplegan@paper | 1000 | unmeasured |") for line in lines)
    assert any(line.startswith("| triplegan (stage) |") for line in lines)

    folder = metrics / "gpu" / "triplegan_paper"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"hardware": "NVIDIA H200", "recipe": "paper", "models": {"triplegan": {
        "recipe": "paper", "profile_epochs": 1000, "paused_at": 55000, "total_steps": 566500}}}))
    paper = {p.name: p for p in plan(params, metrics, targets, ["vae"], recipes)}["triplegan@paper"]
    assert paper.state == "partial" and paper.steps_done == 55000

    called = []
    monkeypatch.setattr(gpu_models, "main", lambda argv: called.append(argv) or 0)
    monkeypatch.setattr("gpu_plan.plan", lambda *args: [paper])
    given = tmp_path / "gpu.yaml"
    given.write_text(yaml.safe_dump(params))
    assert main(["run", "--budget", "480", "--params", str(given), "--metrics", str(metrics)]) == 0
    assert called == [["triplegan", "--budget", "480", "--out", str(metrics / "gpu" / "triplegan_paper"),
                       "--checkpoints", ".gpu/checkpoints", "--recipe", "paper", "--params", str(given)]]
