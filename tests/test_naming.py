"""A data set in words (genzoo.data.naming): MNIST keeps its "digits" texts byte for byte; another data set is
named with its classes in the protocol and the report, and a stage that refused it reads "not applicable"."""

from __future__ import annotations

import json

from test_report import write_metrics
from tiny_data import FASHION_CLASSES

from genzoo.data.naming import MNIST, Naming, naming
from genzoo.stages.report import readme_block, render


def test_digits_and_other_classes_are_named_apart():
    assert MNIST.digits and MNIST.noun == "digits" and MNIST.one == "digit" and MNIST.label(3) == "3"
    assert naming({"dataset": "tiny", "classes": [str(i) for i in range(10)]}).digits  # custom, labelled 0-9
    clothes = naming({"dataset": "fashion-mnist", "classes": list(FASHION_CLASSES)})
    assert not clothes.digits and clothes.noun == "images" and clothes.one == "image"
    assert clothes.label(3) == "3 (Dress)" and clothes.label("9") == "9 (Ankle boot)"
    assert clothes.describe().startswith("fashion-mnist, 10 classes: T-shirt/top, Trouser, Pullover")
    assert clothes.as_dict() == {"dataset": "fashion-mnist", "classes": list(FASHION_CLASSES)}


def test_the_report_names_another_data_set_and_marks_a_refused_model(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    evaluate = json.loads((metrics / "evaluate.json").read_text())
    why = "SimGAN's synthetic set renders the digits 0-9 from fonts, and the classes of fashion-mnist are not digits"
    evaluate["models"]["simgan"] = {"not_applicable": why}
    evaluate["data"] = Naming("fashion-mnist", FASHION_CLASSES).as_dict()
    evaluate["provenance"]["dataset"] = "fashion-mnist"
    (metrics / "evaluate.json").write_text(json.dumps(evaluate))
    (metrics / "anogan.json").write_text(json.dumps({
        "protocol": "one-vs-rest", "classes": [0, 3], "auroc": {"anogan": {"0": 0.9, "3": 0.8}},
        "mean_auroc": {"anogan": 0.85}, "inversion_steps": 3,
        "seconds": {"images": 100, "inversion_mean": 1.0, "device": "cpu"}}))
    text = render(metrics, tmp_path)
    assert "| real training images (floor) |" in text and "real training digits" not in text
    assert f"| simgan | not applicable to fashion-mnist: {why} |" in text
    assert "| 3 (Dress) | 0.800 |" in text and "| 0 (T-shirt/top) | 0.900 |" in text
    assert "on the classes of fashion-mnist, 10 classes: T-shirt/top" in text  # the evaluator's line
    summary = readme_block(metrics, tmp_path)
    simgan = next(line for line in summary.splitlines() if line.startswith("| simgan |"))
    assert " | not applicable | " in simgan, simgan  # the default run's column

    digits = render(write_metrics(tmp_path / "mnist"), tmp_path)  # MNIST's texts as they always were
    assert "| real training digits (floor) |" in digits and "not applicable" not in digits
