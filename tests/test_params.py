"""params.yaml: composed from pipeline/conf, and strictly checked before any work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, composed
from typer.testing import CliRunner

from genzoo.cli import app
from genzoo.engine.errors import ParamsError
from genzoo.models.registry import load_params, parse_params
from genzoo.params import flatten


def test_committed_params_are_the_default_composition(tmp_path):
    """params.yaml is generated, never hand-edited: it must equal what `dvc exp run` would compose."""
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == composed(tmp_path)
    assert load_params(ROOT / "params.yaml").run.profile == "cpu"


@pytest.mark.parametrize("profile", ["cpu", "gpu", "tiny"])
def test_every_profile_composes_to_valid_params(tmp_path, profile):
    params = parse_params(composed(tmp_path, f"profile={profile}"))
    assert params.run.profile == profile


def test_profiles_differ_where_they_should(tmp_path):
    cpu, gpu = composed(tmp_path, "profile=cpu"), composed(tmp_path, "profile=gpu")
    assert gpu["vae"]["epochs"] > cpu["vae"]["epochs"]
    assert gpu["evaluate"]["iwae_k"] == 5000
    assert gpu["data"] == cpu["data"]


# The gpu recipes that a CPU probe of their nets chose (metrics/probes/): the section, the probe run it copies, and
# the keys that probe did not run as the gpu profile does (the flow probes: 20-40 epochs, the start of the gpu run).
PROBED_RECIPES = [("aae", "aae_gpu_recipe/aae_50_epochs_cosine", ()),
                  ("aae_2d", "aae_gpu_recipe/aae_2d_50_epochs_cosine", ()),
                  ("flow_vae", "flow_vae_gpu_recipe/cos40_k10_warmup_2k_from_0", ("epochs", "lr_schedule")),
                  ("flow_vae_deep", "flow_vae_gpu_recipe/k80_warmup_2k_from_0", ("epochs", "lr_schedule"))]


@pytest.mark.parametrize(("section", "probe", "unprobed"), PROBED_RECIPES)
def test_gpu_recipe_is_the_one_its_probe_measured(tmp_path, section, probe, unprobed):
    """A change to a probed gpu recipe must come with a new probe, not leave the old one standing behind it. A key
    added to the section after the probe must hold the default the probe's code ran with."""
    import dataclasses

    from genzoo.models.registry import TRAINABLE

    gpu = composed(tmp_path, "profile=gpu")[section]
    probed = yaml.safe_load((ROOT / "metrics/probes" / probe / "params.yaml").read_text())[section]
    assert {k: v for k, v in gpu.items() if k in probed and k not in unprobed} == \
        {k: v for k, v in probed.items() if k not in unprobed}
    defaults = {f.name: f.default for f in dataclasses.fields(TRAINABLE[section].Config)}
    assert {k: v for k, v in gpu.items() if k not in probed} == {k: defaults[k] for k in gpu if k not in probed}


def test_gpu_aae_2d_shares_the_probed_aae_rates(tmp_path):
    cpu, gpu = composed(tmp_path, "profile=cpu"), composed(tmp_path, "profile=gpu")
    assert gpu["aae_2d"]["lr_reg"] == gpu["aae"]["lr_reg"] < cpu["aae"]["lr_reg"]


def test_override_reaches_the_params(tmp_path):
    assert composed(tmp_path, "vae.lr=2e-3")["vae"]["lr"] == pytest.approx(2e-3)


def _broken(raw: dict, section: str, key: str, value) -> dict:
    raw = copy.deepcopy(raw)
    raw[section][key] = value
    return raw


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("vae", "lr_typo", 1.0, "vae.lr_typo: unknown parameter"),
    ("vae", "lr", "fast", "vae.lr: expected float, got str 'fast'"),
    ("vae", "epochs", 1.5, "vae.epochs: expected int"),
    ("vae", "epochs", True, "vae.epochs: expected int, got bool"),
    ("vae", "hidden", 400, "vae.hidden: expected a list"),
    ("vae", "hidden", [400, "wide"], "vae.hidden[1]: expected int"),
    ("vae", "lr", 0.0, "vae.lr: 0.0 must be > 0"),
    ("vae", "lr", float("nan"), "vae.lr: expected float"),
    ("vae", "latent_dim", 0, "vae.latent_dim: 0 must be > 0"),
    ("engine", "precision", "fp8", "engine.precision: 'fp8' is not one of bf16, fp32"),
    ("vae", "cpu_precision", "fp16", "vae.cpu_precision: 'fp16' is not one of engine, fp32, bf16"),
    ("evaluator", "cpu_precision", "auto", "evaluator.cpu_precision: 'auto' is not one of engine, fp32, bf16"),
    ("engine", "threads", 0, "engine.threads: 0 must be >= 1"),
    ("engine", "threads", "many", "engine.threads: 'many' is not one of auto"),
    ("engine", "threads", 1.5, "engine.threads: expected int or str, got float 1.5"),
    ("engine", "threads", True, "engine.threads: expected int or str, got bool True"),
    ("evaluator", "dropout", 1.5, "evaluator.dropout: 1.5 must be <= 1"),
    ("run", "profile", "huge", "run.profile: 'huge' is not one of"),
])
def test_bad_values_are_refused_with_key_and_file(tiny_raw_params, section, key, value, message):
    with pytest.raises(ParamsError) as err:
        parse_params(_broken(tiny_raw_params, section, key, value), source="params.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("params.yaml: ")


def test_missing_key_and_unknown_section_are_refused(tiny_raw_params):
    raw = copy.deepcopy(tiny_raw_params)
    del raw["vae"]["lr"]
    with pytest.raises(ParamsError, match=r"vae\.lr: missing"):
        parse_params(raw)
    with pytest.raises(ParamsError, match="unknown section.*vea"):
        parse_params({**tiny_raw_params, "vea": {}})
    with pytest.raises(ParamsError, match="missing section.*vae"):
        parse_params({k: v for k, v in tiny_raw_params.items() if k != "vae"})


def test_yaml_exponent_without_dot_is_read_as_float(tiny_raw_params):
    """PyYAML reads `1e-3` as a string (YAML 1.1); a float field accepts it when it parses cleanly."""
    assert parse_params(_broken(tiny_raw_params, "vae", "lr", "1e-3")).model("vae").lr == pytest.approx(1e-3)


@pytest.mark.parametrize("value", ["auto", 1, 3])
def test_engine_threads_is_auto_or_a_count(tiny_raw_params, value):
    """`dvc exp run -S engine.threads=2` writes an int, the default a word: the one key of both kinds."""
    assert parse_params(_broken(tiny_raw_params, "engine", "threads", value)).engine.threads == value


def test_flatten_gives_dotted_keys():
    assert flatten({"vae": {"lr": 0.1, "hidden": [1, 2]}, "run": {"seed": 0}}) == {
        "vae.lr": 0.1, "vae.hidden": [1, 2], "run.seed": 0}


def test_cli_reports_bad_params_in_one_line_without_work(tmp_path, tiny_raw_params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_broken(tiny_raw_params, "vae", "batch_size", -4)))
    result = CliRunner().invoke(app, ["train", "vae", "--params", str(bad), "--data", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "vae.batch_size: -4 must be > 0" in result.output
    assert f"{bad}" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing was written


def test_cli_reports_missing_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", "--params", str(Path("nope.yaml"))])
    assert result.exit_code == 1 and "nope.yaml: not found" in result.output
