"""End to end on a second data set: the pipeline's `dvc repro` on a Fashion-MNIST stand-in (tests/tiny_data.py:
filled silhouettes under Fashion-MNIST's ten class names, a custom set `tiny-fashion` with a CLASSES file; the real
Fashion-MNIST's checksums are fixed, so a tiny copy cannot go by its name), tiny profile, CPU only, no network.

What it shows: the data stages and the base models run on clothes; StackGAN's captions and Sketch-RNN's traced
strokes run on them; SimGAN's train stage (font-rendered digits) refuses in one line and still writes the outputs
DVC expects; the evaluator, evaluate and the report name the data set and its classes, and the report marks
SimGAN "not applicable". To stay within a few minutes on 2 cores it reproduces a subset of the DAG (the data, the
evaluator, two base models, AnoGAN, SimGAN, StackGAN, Sketch-RNN) and then runs the evaluate and report stages'
commands on it (`dvc repro evaluate` would first train every model of the zoo).
"""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from test_pipeline import END, START, Pipeline, _tail, make_tiny_repo, ran_stages
from tiny_data import FASHION_CLASSES, write_tiny_fashion_mirror

pytestmark = pytest.mark.slow

DATASET = "tiny-fashion"
TARGETS = ("train@vae", "train@gan", "anogan", "train_translation@simgan", "train_translation@stackgan",
           "train_translation@sketchrnn")
UPSTREAM = ("download", "preprocess", "derive", "strokes", "train_evaluator")
SCORED = ("vae", "gan", "simgan", "stackgan", "sketchrnn")
SIMGAN_REFUSAL = ("train_translation@simgan: not applicable to tiny-fashion: SimGAN's synthetic set renders the "
                  "digits 0-9 from fonts, and the classes of tiny-fashion are not digits (T-shirt/top, Trouser, "
                  "Pullover, Dress, ...)")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Pipeline:
    base = tmp_path_factory.mktemp("fashion")
    mirror = write_tiny_fashion_mirror(base / "mirror", n_train=300, n_test=100)
    pipe = make_tiny_repo(base, dataset=DATASET, mirror=mirror)
    pipe.repro = pipe.run("dvc", "repro", *TARGETS)
    pipe.scored = pipe.run("genzoo", "evaluate", *(arg for name in SCORED for arg in ("--only", name)))
    pipe.reported = pipe.run("genzoo", "report")
    return pipe


def test_the_dag_runs_on_clothes_and_simgan_refuses_in_one_line(fashion):
    repo, out = fashion.repo, fashion.repro.stdout
    assert sorted(ran_stages(out)) == sorted((*UPSTREAM, *TARGETS)), f"{ran_stages(out)}\n{_tail(out)}"
    meta = json.loads((repo / "data/processed/meta.json").read_text())
    assert meta["dataset"] == DATASET and meta["classes"] == list(FASHION_CLASSES)

    # derive: every set but the font digits, with the reason; the captions set is there
    derived = json.loads((repo / "data/derived/meta.json").read_text())
    assert set(derived["sets"]) == {"paired", "superres", "unpaired", "multidomain"}
    assert set(derived["not_applicable"]) == {"synthetic"} and (repo / "data/captions/train.pt").is_file()
    assert [line for line in out.splitlines() if line.startswith("derive: no ")] == [
        "derive: no synthetic set for tiny-fashion: " + SIMGAN_REFUSAL.split(": ", 2)[2]]

    # SimGAN: one line, and the outputs its stage declares, holding the reason instead of a model
    assert [line for line in out.splitlines() if "not applicable" in line] == [SIMGAN_REFUSAL]
    simgan = json.loads((repo / "metrics/simgan.json").read_text())
    assert simgan["not_applicable"] == SIMGAN_REFUSAL.split(": ", 2)[2]
    assert not (repo / "models/simgan/model.pt").exists() and (repo / "models/simgan/NOT_APPLICABLE").is_file()

    # the others trained: base models, StackGAN on the captions, Sketch-RNN on strokes traced from the silhouettes
    for name in ("vae", "gan", "stackgan", "sketchrnn"):
        assert (repo / f"models/{name}/model.pt").is_file(), name
        assert list((repo / f"metrics/figures/{name}").glob("*.png")), f"{name}: no pictures"
    strokes = json.loads((repo / "data/strokes/meta.json").read_text())
    assert strokes["classes"] == list(FASHION_CLASSES) and strokes["counts"]["test"] >= 80
    assert (repo / "metrics/figures/stackgan/captions.png").is_file()

    status = fashion.run("dvc", "status", *TARGETS)
    assert "changed" not in status.stdout and "modified" not in status.stdout, status.stdout


def test_the_evaluator_evaluate_and_report_name_the_classes(fashion):
    repo = fashion.repo
    with open(repo / "metrics/plots/class_histogram.csv") as handle:  # the evaluator's classes of the samples
        assert [row["class"] for row in csv.DictReader(handle)] == list(FASHION_CLASSES)

    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluate["data"] == {"dataset": DATASET, "classes": list(FASHION_CLASSES)}
    assert evaluate["models"]["simgan"] == {"not_applicable": SIMGAN_REFUSAL.split(": ", 2)[2]}
    assert "test images of tiny-fashion, 10 classes: T-shirt/top, Trouser" in evaluate["protocol"]["samples"]
    assert "digits" not in json.dumps(evaluate["protocol"])
    assert set(evaluate["models"]) == set(SCORED)

    results = (repo / "docs/results.md").read_text()
    protocol = next(line for line in results.splitlines() if line.startswith("Protocol: "))
    assert "tiny-fashion, 10 classes: T-shirt/top" in protocol and "digits" not in protocol, protocol
    assert "| real training images (floor) |" in results
    assert "| simgan | not applicable to tiny-fashion: SimGAN's synthetic set renders" in results
    assert "| 0 (T-shirt/top) |" in results and "| 1 (Trouser) |" in results  # AnoGAN's normal classes
    assert "on the classes of tiny-fashion, 10 classes: T-shirt/top" in results  # the evaluator's line

    readme = (repo / "README.md").read_text().split(START, 1)[1].split(END, 1)[0]
    simgan_row = next(line for line in readme.splitlines() if line.startswith("| simgan |"))
    assert " | not applicable | " in simgan_row, simgan_row
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["data"]["dataset"] == DATASET
