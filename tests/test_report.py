"""The report renders metrics/ only, and keeps the README's results section in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from genzoo.report import END, START, render, splice_readme, to_html


def write_metrics(folder: Path, nll: float = 91.234) -> Path:
    prov = {"profile": "cpu", "device": "cpu (2 cores)", "commit": "0123456789abcdef", "dirty": False,
            "dataset": "mnist", "data_hash": "c65580678af93f1e"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluate.json").write_text(json.dumps({
        "models": {"vae": {"test_nll": nll, "test_nll_stderr": 0.5, "test_k": 500, "test_bits_per_dim": 0.17,
                           "test_elbo": -95.0, "test_images": 1000, "classes_hit": 9, "kl_to_uniform": 0.2, "histogram": [0.1] * 10}},
        "real_test": {"classes_hit": 10, "kl_to_uniform": 0.001, "histogram": [0.1] * 10, "fd": 0.5, "kid": 1e-4,
                      "kid_std": 2e-4, "precision": 0.75, "recall": 0.76, "parzen_ll": 230.04, "parzen_stderr": 2.0,
                      "parzen_sigma": 0.17},
        "protocol": {"nll": "IWAE bound, k=500", "mode_coverage": "10000 samples"}, "provenance": prov}))
    (folder / "evaluator.json").write_text(json.dumps({"test": {"accuracy": 0.9912}, "epochs": 2,
                                                        "train_seconds": 70.0}))
    (folder / "vae.json").write_text(json.dumps({"train_seconds": 40.2, "epochs": 10}))
    (folder / "figures" / "vae").mkdir(parents=True)
    (folder / "figures" / "vae" / "samples.png").write_bytes(b"png")
    return folder


def test_render_reads_every_number_from_metrics(tmp_path):
    text = render(write_metrics(tmp_path / "metrics"))
    assert "| vae | 91.23 ± 0.50 (k=500) | 0.1700 | -95.00 | 40 s (10 epochs) | 86.76" in text
    assert "| vae | — | — | — | — | — | 9/10 | 0.2000 | — |" in text  # a run from before the suite: blank
    assert ("| real training digits (floor) | 0.50 | 0.10 ± 0.20 | 0.750 | 0.760 | 230.0 ± 2.0 (σ=0.17) | 10/10 | "
            "0.0010 | — |") in text
    assert "on 1000 test images" in text
    assert "99.12 %" in text and "86.76 (VAE" in text and "`0123456789`" in text and "cpu (2 cores)" in text
    assert f"![vae samples]({tmp_path.as_posix()}/metrics/figures/vae/samples.png)" in text
    assert "GPU profile" in text and "Pending" in text  # no snapshot yet: said, not invented


def test_render_adds_the_gpu_snapshot_when_present(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    write_metrics(metrics / "gpu", nll=85.5)
    (metrics / "gpu" / "run.json").write_text(json.dumps({"command": "make gpu"}))
    text = render(metrics)
    assert "85.50 ± 0.50" in text and "command: `make gpu`" in text and "Pending" not in text


def test_html_has_tables_and_relative_images(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    page = to_html(render(metrics), metrics)
    assert "<table>" in page and "<td>vae</td>" in page and "<th>FD-evaluator ↓</th>" in page
    assert '<img alt="vae samples" src="figures/vae/samples.png">' in page


def test_splice_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{START}\nold\n{END}\nfooter\n")
    assert splice_readme(readme, "new table\n")
    assert readme.read_text() == f"# title\nintro\n{START}\nnew table\n{END}\nfooter\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not splice_readme(plain, "x") and plain.read_text() == "no markers\n"


def test_committed_readme_shows_the_committed_metrics(monkeypatch):
    """The README's results section must be exactly what `genzoo report` renders from the metrics/ beside it."""
    monkeypatch.chdir(ROOT)
    if not Path("metrics/evaluate.json").exists():
        pytest.skip("no committed results yet")
    section = Path("README.md").read_text().split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == render(Path("metrics")).strip() == Path("metrics/results.md").read_text().strip()


def test_targets_say_met_or_not_from_the_measured_value(tmp_path):
    met = render(write_metrics(tmp_path / "a", nll=85.5))
    assert "| vae | test NLL ≤ 86.0 nats | 85.50 | met |" in met
    missed = render(write_metrics(tmp_path / "b", nll=91.234))
    assert "| vae | test NLL ≤ 86.0 nats | 91.23 | not met |" in missed
    assert "Parzen LL ≥ 240" not in missed  # no gan in these metrics: no row


def test_application_stages_render_their_tables_and_targets(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    (metrics / "anogan.json").write_text(json.dumps({
        "protocol": "one-vs-rest", "classes": [0, 1],
        "auroc": {"anogan": {"0": 0.9, "1": 0.996}, "vae": {"0": 0.98, "1": 0.99}, "autoencoder": {"0": 0.95, "1": 0.99}},
        "mean_auroc": {"anogan": 0.948, "vae": 0.985, "autoencoder": 0.97}, "anchors_mean_auroc": {"deep_svdd": 0.948},
        "inversion_steps": 100, "seconds": {"device": "cpu", "images": 500, "inversion_mean": 12.5,
                                            "single_extrapolated_s": 100.0, "speedup": 8.0, "single_images": 5}}))
    (metrics / "triplegan.json").write_text(json.dumps({
        "labelled": 100, "seeds": [0, 1], "steps": 1100, "baseline_note": "labels only",
        "triplegan": {"test_error": [0.05, 0.07], "mean": 0.06, "std": 0.0141},
        "baseline": {"test_error": [0.15, 0.16], "mean": 0.155, "std": 0.007}}))
    text = render(metrics)
    assert "| 1 | 0.996 | 0.990 | 0.990 |" in text and "| **mean over 2** | **0.948** |" in text
    assert "| anogan | AnoGAN mean AUROC ≥ 0.95 | 0.948 | not met |" in text
    assert "| Triple-GAN's C | 6.00 ± 1.41 % (5.00, 7.00) |" in text
    assert "| triplegan | Triple-GAN mean test error ≤ 1.0 % | 6.000 | not met |" in text
    assert "×8.0" in text


def test_compare_table_shows_mean_and_spread_over_seeds(tmp_path):
    from genzoo.compare import aggregate

    metrics = write_metrics(tmp_path / "metrics")
    rows = {"vae": [{"seed": 0, "fd": 17.0, "grey_ratio": 1.9, "parzen_ll": 159.0, "test_nll": 99.5, "classes_hit": 10,
                     "precision": 0.6, "recall": 0.6, "mem_pixel_ratio": 1.15, "mem_feature_ratio": 2.0,
                     "mem_pixel_near_copies": 0.0},
                    {"seed": 1, "fd": 19.0, "grey_ratio": 2.1, "parzen_ll": 157.0, "test_nll": 99.3, "classes_hit": 10,
                     "precision": 0.6, "recall": 0.7, "mem_pixel_ratio": 1.25, "mem_feature_ratio": 2.0,
                     "mem_pixel_near_copies": 0.0}],
            "gan": [{"seed": 0, "fd": 30.0, "grey_ratio": 1.0, "parzen_ll": 100.0, "classes_hit": 9, "precision": 0.5,
                     "recall": 0.3, "mem_pixel_ratio": 1.0, "mem_feature_ratio": 1.5, "mem_pixel_near_copies": 0.01},
                    {"seed": 1, "fd": 50.0, "grey_ratio": 1.1, "parzen_ll": 90.0, "classes_hit": 10, "precision": 0.4,
                     "recall": 0.2, "mem_pixel_ratio": 1.0, "mem_feature_ratio": 1.5, "mem_pixel_near_copies": 0.02}]}
    (metrics / "compare.json").write_text(json.dumps({
        "models": ["vae", "gan"], "seeds": [0, 1], "real_test": {"grey_share": 0.086},
        "aggregates": {name: aggregate(r, 10) for name, r in rows.items()},
        "protocol": {"memorization": "nearest training digit"}}))
    text = render(metrics)
    assert "| vae | smooth, blurry; a likelihood; local minimum | 18.00 ± 1.41 | 2.00 ± 0.14 | 158.0 ± 1.4 | " \
           "99.40 ± 0.14 | 10 (0) |" in text
    assert "| gan | sharp, artefacts; no likelihood; saddle points, mode collapse | 40.00 ± 14.14 | 1.05 ± 0.07 | " \
           "95.0 ± 7.1 | — | 9–10 (1) |" in text
    assert "Lowest FD-evaluator: **vae**; grey share closest to real digits: **gan**; smallest spread of FD over " \
           "seeds: **vae**" in text


def test_render_adds_each_budgeted_gpu_part(tmp_path):
    """pipeline/gpu_models.py's snapshots (metrics/gpu/<part>/) each get a section with the epochs they afforded."""
    metrics = write_metrics(tmp_path / "metrics")
    part = write_metrics(metrics / "gpu" / "likelihood", nll=84.25)
    (part / "run.json").write_text(json.dumps({
        "command": "python pipeline/gpu_models.py --budget 270 --out metrics/gpu/likelihood vae",
        "budget_seconds": 270, "source_commit": "fedcba9876543210", "source_note": "why",
        "models": {"vae": {"epochs": 120, "profile_epochs": 1500, "steps_per_s": 1190.7, "train_seconds": 44.8}},
        "bench_only": {"pixelrnn": {"steps_per_s": 34.5, "seconds_per_epoch": 24.9}}, "failed": {}}))
    text = render(metrics)
    section = text.split("part `likelihood`", 1)[1]
    assert "Pending" in text  # no full `make gpu` snapshot: still said
    assert "84.25 ± 0.50" in section and "`fedcba9876`" in section
    assert "vae 120 of 1500 (1190.7 steps/s, trained 45 s)" in section and "pixelrnn 34.5 steps/s" in section
    assert "| vae | test NLL ≤ 86.0 nats | 84.25 | met |" in section


def test_render_says_a_checkpointed_part_ran_its_full_epochs_over_runs(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    part = write_metrics(metrics / "gpu" / "rnn", nll=80.25)
    (part / "run.json").write_text(json.dumps({
        "command": "python pipeline/gpu_models.py --budget 500 --out metrics/gpu/rnn --checkpoints c vae pixelrnn",
        "budget_seconds": 500, "checkpoints": True, "failed": {},
        "models": {"vae": {"epochs": 60, "profile_epochs": 60, "steps_per_s": 34.5, "train_seconds": 1490.2,
                           "resumed_from": 12000},
                   "pixelrnn": {"profile_epochs": 60, "paused_at": 700, "total_steps": 28000}}}))
    section = render(metrics).split("part `rnn`", 1)[1]
    assert "epochs and all" in section and "capped" not in section.split("|")[0]
    assert "vae 60 of 60 (34.5 steps/s, trained 1490 s, resumed at step 12000)" in section
    assert "Paused, to go on: pixelrnn at step 700 of 28000." in section


def test_render_says_where_each_run_of_a_model_trained_over_several_ran(tmp_path):
    """gpu_models.py's ledger: a model finished over runs on different hardware names each run's steps."""
    metrics = write_metrics(tmp_path / "metrics")
    part = write_metrics(metrics / "gpu" / "rnn", nll=80.25)
    runs = [{"hardware": "GPU X", "from_step": 0, "to_step": 1000, "seconds": 10.0},
            {"hardware": "cpu (2 cores)", "from_step": 1000, "to_step": 1100, "seconds": 50.0}]
    (part / "run.json").write_text(json.dumps({
        "command": "python pipeline/gpu_models.py --budget 60 --out metrics/gpu/rnn --checkpoints c vae",
        "budget_seconds": 60, "checkpoints": True, "failed": {},
        "models": {"vae": {"epochs": 60, "profile_epochs": 60, "steps_per_s": 2.0, "train_seconds": 60.0,
                           "resumed_from": 1000, "runs": runs}}}))
    text = render(metrics)
    assert "part `rnn` (" in text and "60 of 60 epochs in 2 runs) |" in text  # the overview says so too
    section = text.split("part `rnn`", 2)[2]
    assert ("vae 60 of 60 (in 2 runs: steps 0–1000 on GPU X in 10 s (100.0 steps/s with its start), "
            "steps 1000–1100 on cpu (2 cores) in 50 s (2.0 steps/s with its start))") in section
    assert "| 10 s on GPU X + 50 s on cpu (2 cores), runs with their starts (" in section  # not one mixed time


def test_the_gpu_overview_scores_each_target_by_its_latest_run_not_its_best(tmp_path):
    """Several gpu runs of one model: the overview shows the most recently evaluated (the current recipe), even
    when an older run did better; a target no gpu run has reached says pending, never a cpu number."""
    metrics = write_metrics(tmp_path / "metrics")
    for part, nll, created, epochs in [("old", 84.0, "2026-11-20T10:00:00Z", 900),
                                       ("new", 86.5, "2026-11-25T10:00:00Z", 120)]:
        folder = write_metrics(metrics / "gpu" / part, nll=nll)
        evaluate = json.loads((folder / "evaluate.json").read_text())
        evaluate["provenance"].update(profile="gpu", created=created)
        (folder / "evaluate.json").write_text(json.dumps(evaluate))
        (folder / "run.json").write_text(json.dumps({"models": {"vae": {"epochs": epochs, "profile_epochs": 1500}}}))
    overview = render(metrics).split("### GPU targets", 1)[1].split("###", 1)[0]
    assert ("| vae | test NLL ≤ 86.0 nats | 86.50 | not met | part `new` (2026-11-25, 120 of 1500 epochs, on cpu "
            "(2 cores)) |" in overview)  # the gpu profile's params; the machine that ran them named
    assert "84.00" not in overview
    assert "| pixelrnn | test NLL ≤ 80.5 nats (Row LSTM) | pending | | no gpu run yet |" in overview
    assert "| anogan | AnoGAN mean AUROC ≥ 0.95 | pending |" in overview


def test_no_gpu_run_means_no_gpu_overview(tmp_path):
    assert "GPU targets" not in render(write_metrics(tmp_path / "metrics"))
