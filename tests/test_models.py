"""Every registered model keeps the contract of genzoo.models.base (parametrized over the registry), the registry
matches the pipeline's stages, and each model file cites its paper. (Model-specific checks: test_<model>.py.)"""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from helpers import CLASSES, ROOT, SHAPE, images, model_batch, tiny_model

from genzoo.data.derived import BESIDE, SETS
from genzoo.engine.training import seed_everything
from genzoo.models.base import ZooModel
from genzoo.models.registry import EVALUATOR, FROZEN, GENERATIVE, TRAINABLE, load_model, save_model


def overrides(cls, method: str) -> bool:
    """Whether `cls` (or a class between it and ZooModel, e.g. a shared GAN mixin) defines `method` itself."""
    return next(k for k in cls.__mro__ if method in vars(k)) is not ZooModel


@pytest.mark.parametrize("name", TRAINABLE)
def test_declarations_match_what_the_model_implements(name):
    """The stages act on the declarations alone (evaluate scores samples and likelihoods, train hands over the
    evaluator, the labelled set and the data), so each one must come with the method that makes it true."""
    cls = TRAINABLE[name]
    assert issubclass(cls, ZooModel)
    for method in ("configure_optimizers", "train_step", "validate"):
        assert overrides(cls, method), method
    assert cls.samples == overrides(cls, "sample")
    assert cls.conditional == overrides(cls, "sample_given")
    assert cls.samples or not cls.conditional  # a conditional model's sample(n) draws a mix of labels
    assert cls.likelihood in (None, "exact", "bound")
    assert (cls.likelihood is not None) == overrides(cls, "log_likelihood")
    assert (cls.likelihood == "bound") == overrides(cls, "elbo")
    assert cls.few_labels == overrides(cls, "attach_labelled")
    assert (cls.perceptual_network is not None) == overrides(cls, "attach_perceptual")
    assert cls.perceptual_network in (None, *FROZEN) and cls.perceptual_network != EVALUATOR  # never its own judge
    assert cls.dataset is None or cls.dataset in (*SETS, *BESIDE)
    assert cls.samples or overrides(cls, "output")  # output's default is samples
    assert bool(cls.comparison) == overrides(cls, "comparison_pictures")
    if cls.comparison:  # registered models the evaluate stage scores, drawn on one test split (this class's set)
        assert name in cls.comparison and set(cls.comparison) <= set(GENERATIVE), cls.comparison
        assert all(GENERATIVE[n].dataset == cls.dataset for n in cls.comparison)


@pytest.mark.parametrize("name", TRAINABLE)
def test_output_is_one_finite_tensor_and_steps_take_whole_batches(name, tiny_params):
    """`output` is the one way tests and pictures get what a model makes: images in [0, 1] (the evaluator,
    a classifier, gives its logits)."""
    seed_everything(0)
    model = tiny_model(name, tiny_params).eval()
    out = model.output(model_batch(model, n=4, split="test"))
    assert isinstance(out, torch.Tensor) and len(out) >= 1 and torch.isfinite(out).all()
    if name in FROZEN:  # classifiers
        assert out.shape == (4, CLASSES)
    else:
        assert out.ndim == 4 and out.shape[1] in (1, 3) and out.min() >= 0 and out.max() <= 1
    assert isinstance(model.batches_per_step, int) and model.batches_per_step >= 1


@pytest.mark.parametrize("name", TRAINABLE)
def test_same_seed_same_initial_weights(name, tiny_params):
    a, b = tiny_model(name, tiny_params), tiny_model(name, tiny_params)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    c = tiny_model(name, tiny_params, seed=1)
    assert any(not torch.equal(c.state_dict()[k], v) for k, v in a.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_changes_the_weights_and_returns_finite_scalars(name, tiny_params):
    seed_everything(0)
    model = tiny_model(name, tiny_params).train()
    before = {k: v.clone() for k, v in model.named_parameters()}
    losses = model.train_step(model_batch(model), model.configure_optimizers())
    assert losses and all(v.ndim == 0 and torch.isfinite(v) and not v.requires_grad for v in losses.values())
    changed = [k for k, v in model.named_parameters() if not torch.equal(before[k], v)]
    assert changed == list(before), f"not updated: {set(before) - set(changed)}"


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_few_steps_on_a_tiny_tensor_stay_finite(name, tiny_params):
    seed_everything(0)
    model = tiny_model(name, tiny_params).train()
    opt = model.configure_optimizers()
    for step in range(5):
        losses = model.train_step(model_batch(model, seed=step), opt)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    values = model.validate(model_batch(model, split="val"))
    assert values and all(torch.isfinite(v) for v in values.values())


@pytest.mark.parametrize("name", TRAINABLE)
def test_save_load_round_trip_gives_identical_outputs(name, tiny_params, tmp_path):
    seed_everything(0)
    model = tiny_model(name, tiny_params)
    model.train_step(model_batch(model), model.configure_optimizers())  # move BatchNorm statistics off defaults
    model.eval()
    path = save_model(model, name, tmp_path / "model.pt")
    loaded = load_model(path)
    b = model_batch(model, split="test")
    torch.manual_seed(1)
    expected = model.output(b)
    torch.manual_seed(1)
    got = loaded.output(b)
    assert torch.equal(expected, got)
    assert loaded.config == model.config


@pytest.mark.parametrize("name", [n for n, cls in GENERATIVE.items() if cls.samples])
def test_samples_are_images_in_unit_range(name, tiny_params):
    samples = tiny_model(name, tiny_params).eval().sample(6)
    assert samples.shape == (6, *SHAPE)
    assert samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("name", [n for n, cls in GENERATIVE.items() if cls.likelihood])
def test_log_likelihood_is_finite_and_not_positive(name, tiny_params):
    log_p = tiny_model(name, tiny_params).eval().log_likelihood(images()["xb"].float(), k=7)
    assert log_p.shape == (8,)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()


@pytest.mark.parametrize("name", GENERATIVE)
def test_pictures_are_named_grids_of_unit_range_images(name, tiny_params):
    """What the train stage hands every model: 100 test images, their labels and the uint8 training split."""
    seed_everything(0)
    model = tiny_model(name, tiny_params).eval()
    if model.dataset is None:
        data = {"test": torch.rand(100, *SHAPE), "test_y": torch.arange(100) % CLASSES, "train": images(40)["x"]}
    else:  # a derived set: its first test rows, every key, as stored
        data = model_batch(model, n=20, split="test")
    grids = model.pictures(data)
    assert grids
    for picture, (grid, nrow) in grids.items():
        assert re.fullmatch(r"[a-z0-9_]+", picture) and nrow >= 1
        assert grid.ndim == 4 and grid.shape[1] in (1, 3) and len(grid) >= 1
        assert torch.isfinite(grid).all() and grid.min() >= 0 and grid.max() <= 1


def test_registry_matches_the_train_stages_and_the_params():
    """A model in the registry but not in the pipeline (or the reverse) would silently never be trained. (The rest
    of dvc.yaml is `genzoo dag`'s to fill in and check.)"""
    config = yaml.safe_load((ROOT / "pipeline/conf/config.yaml").read_text())
    assert [name for name in TRAINABLE if name not in config] == [], "models without a params section"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages["train"]["foreach"]) == [name for name, cls in GENERATIVE.items() if cls.dataset is None]
    assert list(stages["train_translation"]["foreach"]) == [name for name, cls in GENERATIVE.items() if cls.dataset]


# The first author and year of each seed model's paper: a docstring must cite the right one, not just any year.
PAPERS = {"autoencoder": ("Hinton", 2006), "vae": ("Kingma", 2014), "cvae": ("Sohn", 2015), "gan": ("Goodfellow", 2014),
          "dcgan": ("Radford", 2016), "aae": ("Makhzani", 2015), "flow_vae": ("Rezende", 2015),
          "pixelcnn": ("van den Oord", 2016), "pixelrnn": ("van den Oord", 2016), "ebgan": ("Zhao", 2017),
          "pix2pix": ("Isola", 2017), "enhancenet": ("Sajjadi", 2017), "cyclegan": ("Zhu", 2017),
          "stargan": ("Choi", 2018), "simgan": ("Shrivastava", 2017), "sketchrnn": ("Ha", 2018),
          "stackgan": ("Zhang", 2017), "triplegan": ("Li", 2017)}
CITATION = re.compile(r'(?P<model>[^\n—]+) — (?P<authors>[^"\n]+?) (?P<year>(?:19|20)\d\d), "(?P<title>[^"]{10,})"')


@pytest.mark.parametrize("name", [n for n in TRAINABLE if n not in FROZEN])
def test_each_model_file_names_its_paper(name):
    """The docstring opens with `Model — First, Second & Last YEAR, "Title"` (the paper it reproduces)."""
    module = TRAINABLE[name].__module__
    doc = __import__(module, fromlist=["_"]).__doc__ or ""
    cited = CITATION.match(doc)
    assert cited, f"{module}: the docstring should open with `Name — Authors YEAR, \"Title\"`, got {doc[:120]!r}"
    first_author = re.split(r",| & | et al\.", cited["authors"])[0].strip()
    expected = PAPERS.get(module.rsplit(".", 1)[1])
    if expected is not None:
        assert (first_author, int(cited["year"])) == expected, (module, first_author, cited["year"])
