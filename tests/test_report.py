"""The report renders metrics/ beside targets.yaml only, and keeps the README's summary and docs/results.md in sync."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

from genzoo.engine.errors import GenzooError
from genzoo.stages import report as report_module
from genzoo.stages.report import END, START, readme_block, render, report_stage, splice_readme, to_html
from genzoo.targets import TargetsError, load_targets


def write_metrics(folder: Path, nll: float = 91.234, k: int = 500, images: int = 1000, recipe: str | None = None
                  ) -> Path:
    """A run's metrics folder; its VAE's NLL covers `k` and `images` (the paper's protocol: 5000 and 10000) and
    records `recipe` where given (none recorded: ours)."""
    prov = {"profile": "cpu", "device": "cpu (2 cores)", "commit": "0123456789abcdef", "dirty": False,
            "dataset": "mnist", "data_hash": "c65580678af93f1e"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluate.json").write_text(json.dumps({
        "models": {"vae": {"test_nll": nll, "test_nll_stderr": 0.5, "test_k": k, "test_bits_per_dim": 0.17,
                           "test_elbo": -95.0, "test_images": images, "classes_hit": 9, "kl_to_uniform": 0.2,
                           "histogram": [0.1] * 10, **({"recipe": recipe} if recipe else {})}},
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
    text = render(write_metrics(tmp_path / "metrics"), tmp_path)
    assert "| vae | 91.23 ± 0.50 (k=500) | 0.1700 | -95.00 | 40 s (10 epochs) | 86.76" in text
    assert "| vae | — | — | — | — | — | 9/10 | 0.2000 | — |" in text  # a run from before the suite: blank
    assert ("| real training digits (floor) | 0.50 | 0.10 ± 0.20 | 0.750 | 0.760 | 230.0 ± 2.0 (σ=0.17) | 10/10 | "
            "0.0010 | — |") in text
    assert "on 1000 test images" in text
    assert "99.12 %" in text and "86.76 nats (VAE" in text and "`0123456789`" in text and "cpu (2 cores)" in text
    assert "![vae samples](metrics/figures/vae/samples.png)" in text  # linked from the page's folder
    assert "GPU profile" in text and "Pending" in text  # no snapshot yet: said, not invented


def test_render_names_enhancenets_perceptual_network_apart_from_the_evaluator_when_trained(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    assert "perceptual network" not in render(metrics, tmp_path)  # a snapshot that never trained EnhanceNet
    (metrics / "perceptual.json").write_text(json.dumps({"test": {"accuracy": 0.9806}, "epochs": 2,
                                                         "train_seconds": 39.2}))
    text = render(metrics, tmp_path)
    assert "EnhanceNet's perceptual network" in text and "apart from the evaluator" in text
    assert "test accuracy 98.06 % after 2 epochs (39 s)" in text and "99.12 %" in text


def test_render_adds_the_gpu_snapshot_when_present(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    write_metrics(metrics / "gpu", nll=85.5)
    (metrics / "gpu" / "run.json").write_text(json.dumps({"command": "make gpu"}))
    text = render(metrics, tmp_path)
    assert "85.50 ± 0.50" in text and "command: `make gpu`" in text and "Pending" not in text


def test_html_has_tables_and_relative_images(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    page = to_html(render(metrics, metrics))  # the page lives in metrics/
    assert "<table>" in page and "<td>vae</td>" in page and "<th>FD-evaluator ↓</th>" in page
    assert '<img src="figures/vae/samples.png" alt="vae samples" />' in page
    assert "<h2>Summary</h2>" in page and "<strong>99.12 %</strong>" in page


def test_html_comes_from_markdown_it_not_a_home_made_converter():
    source = Path(report_module.__file__).read_text()
    assert "from markdown_it import MarkdownIt" in source and "html.escape" not in source
    page = to_html("| a | b |\n|---|---|\n| `x` | <script>alert(1)</script> |\n")
    assert "<code>x</code>" in page and "<script>" not in page  # raw HTML in the markdown is escaped


def test_splice_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{START}\nold\n{END}\nfooter\n")
    assert splice_readme(readme, "new table\n")
    assert readme.read_text() == f"# title\nintro\n{START}\nnew table\n{END}\nfooter\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not splice_readme(plain, "x") and plain.read_text() == "no markers\n"


def test_committed_readme_and_results_show_the_committed_metrics(monkeypatch):
    """The README's summary and docs/results.md must be exactly what `genzoo report` renders from metrics/."""
    monkeypatch.chdir(ROOT)
    if not Path("metrics/evaluate.json").exists():
        pytest.skip("no committed results yet")
    section = Path("README.md").read_text().split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == readme_block(Path("metrics"), Path(".")).strip()
    assert Path("docs/results.md").read_text() == render(Path("metrics"), Path("docs"))


def test_readme_reads_in_five_minutes():
    """At most 250 lines; it opens with what genzoo is and the two commands, and links the full results."""
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines"
    opening = readme.split("\n## ", 1)[0]  # everything before the first section
    assert lines[0] == "# genzoo" and "genzoo is" in opening
    assert re.search(r"^make run\b", opening, re.M) and re.search(r"^make test\b", opening, re.M)
    timing = json.loads((ROOT / "metrics" / "timing" / "cpu_dag.json").read_text())  # the committed DAG timing
    assert f"{timing['total_seconds']:.0f} s" in opening and re.search(r"took \d+ min with the install", opening)
    assert "](docs/results.md)" in readme
    for section in ("## GPU profile", "## Sweeps", "## MLflow UI", "## Sharing through a DVC remote",
                    "## Adding a model", "## Layout"):
        assert section in readme
    prose = readme.split(START, 1)[0] + readme.split(END, 1)[1]
    assert not re.search(r"`[0-9a-f]{7,40}`", prose), "a commit hash in the README's prose: docs/notes/ keeps those"
    assert "values identical" not in prose


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_readmes_quick_test_loop_is_what_make_runs():
    """`make test TEST_ARGS='-m "not slow"'`, as the README gives it, reaches pytest as one marker expression, and
    the slow marker is declared (pytest would warn about an unknown one and still run everything)."""
    command = """make test TEST_ARGS='-m "not slow"'"""
    assert command in (ROOT / "README.md").read_text().replace("\n", " ")
    dry = subprocess.run(["make", "-n", "test", 'TEST_ARGS=-m "not slow"'], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    (pytest_line,) = [line for line in dry.splitlines() if " -m pytest " in line]
    assert pytest_line.endswith(' -m "not slow"'), pytest_line
    # without it xdist queues the files by their number of tests, and the end-to-end module starts last
    assert "--dist loadfile --no-loadscope-reorder" in pytest_line, pytest_line
    assert 'markers = ["slow:' in (ROOT / "pyproject.toml").read_text()


def test_every_link_of_the_readme_and_the_docs_resolves():
    for page in [ROOT / "README.md", ROOT / "docs" / "results.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


VAE_TARGET = "| vae | test NLL ≤ 86.76 nats (the paper's, VAE, k = 1 training) |"


def test_a_paper_number_is_met_or_not_only_by_the_papers_recipe_on_its_whole_protocol(tmp_path):
    full = {"k": 5000, "images": 10000}
    met = render(write_metrics(tmp_path / "a", nll=85.5, recipe="paper", **full), tmp_path)
    assert f"{VAE_TARGET} paper | 85.50 | met |" in met
    missed = render(write_metrics(tmp_path / "b", nll=91.234, recipe="paper", **full), tmp_path)
    assert f"{VAE_TARGET} paper | 91.23 | not met |" in missed
    assert "Parzen LL ≥ 225" not in missed.split("## Default pipeline", 1)[1]  # no gan in this run: no row
    ours = render(write_metrics(tmp_path / "c", nll=85.5, **full), tmp_path)  # no recipe recorded: ours
    assert (f"{VAE_TARGET} ours | 85.50 | not the paper's recipe (784-512-512-50 ReLU, ~1.4M weights (the paper's "
            "784-200-200-50 tanh, ~0.42M), 50k-step KL warm-up, cosine Adam) |") in ours
    partial = render(write_metrics(tmp_path / "d", nll=85.5, recipe="paper"), tmp_path)  # k = 500 on 1000 images
    assert f"{VAE_TARGET} paper | 85.50 | partial: 1,000 of 10,000 test images, k = 500 of 5,000 |" in partial


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def _application_files(folder: Path, classes: list[int], images: int, steps: int, seeds: list[int],
                       recipe: str | None = None) -> None:
    """anogan.json and triplegan.json as their stages write them, of the given size."""
    tag = {"recipe": recipe} if recipe else {}
    auroc = {m: {str(c): 0.96 for c in classes} for m in ("anogan", "vae", "autoencoder")}
    (folder / "anogan.json").write_text(json.dumps({
        "protocol": "one-vs-rest", "classes": classes, "auroc": auroc, "mean_auroc": {m: 0.96 for m in auroc},
        "test_images": images, "inversion_steps": steps, **tag,
        "seconds": {"device": "cpu", "images": images, "inversion_mean": 10.0}}))
    errors = [0.005 + 0.001 * i for i in range(len(seeds))]
    (folder / "triplegan.json").write_text(json.dumps({
        "labelled": 100, "seeds": seeds, "steps": 3300, "baseline_note": "labels only", "test_images": images, **tag,
        "triplegan": {"test_error": errors, "n": len(errors), "mean": sum(errors) / len(errors),
                      "std": 0.001 if len(errors) > 1 else None},
        "baseline": {"test_error": [0.1] * len(seeds), "n": len(seeds), "mean": 0.1,
                     "std": 0.0 if len(seeds) > 1 else None}}))


@pytest.mark.parametrize("recipe", [None, "paper"])
def test_a_cpu_sized_anogan_and_a_one_seed_triplegan_are_never_met(tmp_path, recipe):
    """One normal class, 500 test images, 100 inversion steps; one Triple-GAN seed: partial, never met or not
    met, in the README's summary, the default run's targets and a gpu run's, even for the paper's recipe."""
    t = load_targets()
    only = dataclasses.replace(t, targets=tuple(x for x in t.targets if x.model in ("anogan", "triplegan")))
    metrics = write_metrics(tmp_path / "metrics")
    _application_files(metrics, [0], 500, 100, [0], recipe)
    part = write_metrics(metrics / "gpu" / "apps", recipe=recipe)
    _application_files(part, [0], 500, 100, [0], recipe)
    text = render(metrics, tmp_path, only) + readme_block(metrics, tmp_path, only)
    rows = [row for row in _table_rows(text) if "anogan" in row or "triplegan" in row or "Triple-GAN" in row]
    assert len(rows) >= 6
    assert not [row for row in rows if re.search(r"\bmet\b", row)], rows
    assert "partial: 1 of 10 classes, 500 of 10,000 test images, 100 of 500 inversion steps" in text
    assert "partial: 500 of 10,000 test images, 1 of 3 seeds" in text
    assert "0.50 % (one seed: no spread)" in text and "± 0.00" not in text and "± —" not in text
    assert "on one seed: no test of the difference" in text


def test_the_whole_protocol_of_the_papers_recipe_gets_a_verdict(tmp_path):
    """The control for the test above: ten classes, every test image, 500 steps, three seeds, the paper's recipe."""
    metrics = write_metrics(tmp_path / "metrics")
    _application_files(metrics, list(range(10)), 10000, 500, [0, 1, 2], "paper")
    section = render(metrics, tmp_path).split("## Default pipeline", 1)[1]
    assert "| anogan | AnoGAN mean AUROC ≥ 0.913 (the paper's) | paper | 0.9600 | met |" in section
    assert "| triplegan | Triple-GAN mean test error ≤ 0.91 % (the paper's) | paper | 0.60 | met |" in section
    assert "| Triple-GAN's C | 0.60 ± 0.10 % (0.50, 0.60, 0.70) |" in section
    assert "Welch's t" in section and "separated" in section  # 0.6 ± 0.1 % against 10 ± 0 %


def test_a_run_on_another_data_set_is_off_protocol_never_met(tmp_path):
    """The targets are MNIST's: the paper's recipe on its whole protocol, but on Fashion-MNIST, is judged neither
    met nor not met, in the summary, the default run's targets and the application tables."""
    metrics = write_metrics(tmp_path / "metrics", nll=85.5, k=5000, images=10000, recipe="paper")
    _application_files(metrics, list(range(10)), 10000, 500, [0, 1, 2], "paper")
    for name in ("evaluate.json", "anogan.json", "triplegan.json"):
        data = json.loads((metrics / name).read_text())
        data["provenance"] = {**data.get("provenance", {}), "dataset": "fashion-mnist"}
        (metrics / name).write_text(json.dumps(data))
    text = render(metrics, tmp_path) + readme_block(metrics, tmp_path)
    rows = [row for row in _table_rows(text) if re.search(r"\b(vae|anogan|triplegan)\b", row)]
    assert rows and not [row for row in rows if re.search(r"\bmet\b", row)], rows
    assert f"{VAE_TARGET} paper | 85.50 | off protocol: fashion-mnist data, not mnist |" in text
    assert "| anogan | AnoGAN mean AUROC ≥ 0.913 (the paper's) | paper | 0.9600 | off protocol: fashion-mnist" in text


def test_application_stages_render_their_tables_and_targets(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    (metrics / "anogan.json").write_text(json.dumps({
        "protocol": "one-vs-rest", "classes": [0, 1],
        "auroc": {"anogan": {"0": 0.9, "1": 0.996}, "vae": {"0": 0.98, "1": 0.99},
                  "autoencoder": {"0": 0.95, "1": 0.99}},
        "mean_auroc": {"anogan": 0.948, "vae": 0.985, "autoencoder": 0.97}, "anchors_mean_auroc": {"deep_svdd": 0.948},
        "inversion_steps": 100, "seconds": {"device": "cpu", "images": 500, "inversion_mean": 12.5,
                                            "single_extrapolated_s": 100.0, "speedup": 8.0, "single_images": 5}}))
    (metrics / "triplegan.json").write_text(json.dumps({
        "labelled": 100, "seeds": [0, 1], "steps": 1100, "baseline_note": "labels only",
        "triplegan": {"test_error": [0.05, 0.07], "mean": 0.06, "std": 0.0141},
        "baseline": {"test_error": [0.15, 0.16], "mean": 0.155, "std": 0.007}}))
    text = render(metrics, tmp_path)
    assert "| 1 | 0.996 | 0.990 | 0.990 |" in text and "| **mean over 2** | **0.948** |" in text
    assert ("| anogan | AnoGAN mean AUROC ≥ 0.913 (the paper's) | ours | 0.9480 | not the paper's recipe (") in text
    assert "partial: 2 of 10 classes, test images not recorded, 100 of 500 inversion steps |" in text
    assert "| Triple-GAN's C | 6.00 ± 1.41 % (5.00, 7.00) | 0.91 ± 0.58 % (Li et al. 2017, Table 1)" in text
    assert "| triplegan | Triple-GAN mean test error ≤ 0.91 % (the paper's) | ours | 6.00 | not the paper's" in text
    assert "partial: test images not recorded, 2 of 3 seeds |" in text
    assert "Published means over the ten classes: AnoGAN 0.913 (" in text  # from targets.yaml, not anogan.json
    assert "×8.0" in text


def test_compare_table_shows_mean_and_spread_over_seeds(tmp_path):
    from genzoo.stages.compare import aggregate

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
        "runs": {name: {f"s{row['seed']}": row for row in r} for name, r in rows.items()},
        "aggregates": {name: aggregate(r, 10) for name, r in rows.items()},
        "protocol": {"memorization": "nearest training digit"}}))
    text = render(metrics, tmp_path)
    assert "| model | the seed's claim (its words, not measured) | FD-evaluator |" in text
    assert "| vae | “smooth, blurry; a likelihood; local minimum” | 18.00 ± 1.41 | 2.00 ± 0.14 | 158.0 ± 1.4 | " \
           "99.40 ± 0.14 | 10 (0) |" in text
    assert "| gan | “sharp, artefacts; no likelihood; saddle points, mode collapse” | 40.00 ± 14.14 | 1.05 ± 0.07 | " \
           "95.0 ± 7.1 | — | 9–10 (1) |" in text
    # FD 18 ± 1.4 against 40 ± 14 over two seeds each: the means differ, the seeds do not separate them
    assert ("Lowest FD-evaluator: no clear winner (vae 18.00 ± 1.41 does not separate from gan 40.00 ± 14.14 "
            "(p = ") in text
    # |grey ratio − 1| 0.0, 0.1 against 0.9, 1.1: separated even on two seeds
    assert ("Grey share closest to real digits (per seed, |grey ratio − 1|): **gan** (Welch's t against each other "
            "model over the seeds: p ≤ 0.032)") in text
    assert "the words of the tutorial the seeds quote, not measurements" in text


def test_compare_names_a_winner_only_when_the_seeds_separate_it(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    fd = {"vae": [17.2, 17.4, 18.2], "gan": [13.1, 14.4, 13.1], "ebgan": [12.5, 11.3, 13.8]}  # ebgan, gan overlap
    grey = {"vae": [1.94, 1.95, 1.96], "gan": [0.72, 0.75, 0.76], "ebgan": [1.02, 1.03, 1.01]}  # ebgan clearly
    runs = {name: {f"s{i}": {"seed": i, "fd": fd[name][i], "grey_ratio": grey[name][i]} for i in range(3)}
            for name in fd}
    (metrics / "compare.json").write_text(json.dumps({
        "models": list(fd), "seeds": [0, 1, 2], "real_test": {"grey_share": 0.086}, "runs": runs,
        "aggregates": {name: {"fd": {"mean": 1.0, "std": 0.1, "n": 3}, "grey_ratio": {"mean": 1.0, "std": 0.1, "n": 3},
                              "seeds_missing_a_class": 0} for name in fd},
        "protocol": {"memorization": "nearest training digit"}}))
    text = render(metrics, tmp_path)
    assert "Lowest FD-evaluator: no clear winner (ebgan 12.53 ± 1.25 does not separate from gan 13.53 ± 0.75" in text
    assert ("Grey share closest to real digits (per seed, |grey ratio − 1|): **ebgan** (Welch's t against each "
            "other model over the seeds: p ≤ ") in text
    assert "Smallest spread of FD over seeds: no clear winner" in text  # an F-test on three seeds each


def test_render_adds_each_budgeted_gpu_part(tmp_path):
    """pipeline/gpu_models.py's snapshots (metrics/gpu/<part>/) each get a section with the epochs they afforded."""
    metrics = write_metrics(tmp_path / "metrics")
    part = write_metrics(metrics / "gpu" / "likelihood", nll=84.25)
    (part / "run.json").write_text(json.dumps({
        "command": "python pipeline/gpu_models.py --budget 270 --out metrics/gpu/likelihood vae",
        "budget_seconds": 270, "source_commit": "fedcba9876543210", "source_note": "why",
        "models": {"vae": {"epochs": 120, "profile_epochs": 1500, "steps_per_s": 1190.7, "train_seconds": 44.8}},
        "bench_only": {"pixelrnn": {"steps_per_s": 34.5, "seconds_per_epoch": 24.9}}, "failed": {}}))
    text = render(metrics, tmp_path)
    section = text.split("part `likelihood`", 1)[1]
    assert "Pending" in text  # no full `make gpu` snapshot: still said
    assert "84.25 ± 0.50" in section and "`fedcba9876`" in section
    assert "vae 120 of 1500 (1190.7 steps/s, trained 45 s)" in section and "pixelrnn 34.5 steps/s" in section
    assert f"{VAE_TARGET} ours | 84.25 | not the paper's recipe (" in section


def test_render_says_a_checkpointed_part_ran_its_full_epochs_over_runs(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    part = write_metrics(metrics / "gpu" / "rnn", nll=80.25)
    (part / "run.json").write_text(json.dumps({
        "command": "python pipeline/gpu_models.py --budget 500 --out metrics/gpu/rnn --checkpoints c vae pixelrnn",
        "budget_seconds": 500, "checkpoints": True, "failed": {},
        "models": {"vae": {"epochs": 60, "profile_epochs": 60, "steps_per_s": 34.5, "train_seconds": 1490.2,
                           "resumed_from": 12000},
                   "pixelrnn": {"profile_epochs": 60, "paused_at": 700, "total_steps": 28000}}}))
    section = render(metrics, tmp_path).split("part `rnn`", 1)[1]
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
    text = render(metrics, tmp_path)
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
    overview = render(metrics, tmp_path).split("## GPU targets", 1)[1].split("\n## ", 1)[0]
    assert f"{VAE_TARGET} paper's | pending | | no paper-recipe gpu run yet |" in overview
    assert (f"{VAE_TARGET} ours | 86.50 | not the paper's recipe (784-512-512-50 ReLU, ~1.4M weights (the paper's "
            "784-200-200-50 tanh, ~0.42M), 50k-step KL warm-up, cosine Adam); partial: 1,000 of 10,000 test images, "
            "k = 500 of 5,000 | part `new` (2026-11-25, 120 of 1500 epochs, on cpu (2 cores)) |" in overview)
    assert "84.00" not in overview
    assert ("| pixelrnn | test NLL ≤ 80.54 nats (the paper's, Row LSTM) | paper's | pending | | no paper-recipe gpu "
            "run yet |") in overview
    assert "| cvae | evaluator agrees with the asked label ≥ 95 % (ours) |  | pending | | no gpu run yet |" in overview
    assert "| anogan | AnoGAN mean AUROC ≥ 0.913 (the paper's) | paper's | pending |" in overview


def test_no_gpu_run_means_no_gpu_overview(tmp_path):
    assert "GPU targets" not in render(write_metrics(tmp_path / "metrics"), tmp_path)


# --- targets.yaml: the one declarative place for anchors and targets ---------------------------------------------

TARGET = {"model": "vae", "what": "test NLL", "key": "models.vae.test_nll", "direction": "<=", "number": 90.0,
          "unit": "nats", "paper": "Kingma & Welling 2014", "protocol": "IWAE bound", "profiles": ["gpu"],
          "against": "ours"}
ANCHOR = {"model": "vae", "what": "test NLL", "key": "models.vae.test_nll", "number": 87.5, "spread": 0.5,
          "unit": "nats", "direction": "<=", "paper": "Someone et al. 2099", "table": "Table 9",
          "protocol": "k = 5000", "profiles": ["gpu"]}


def write_targets(path: Path, **sections) -> Path:
    import yaml
    path.write_text(yaml.safe_dump(sections, allow_unicode=True, sort_keys=False))
    return path


def test_the_committed_targets_file_loads_and_covers_the_old_report_tables():
    t = load_targets()
    assert len(t.targets) >= 28 and len(t.anchors) >= 10 and t.claims and t.seed_claims
    assert {x.model for x in t.targets} >= {"evaluator", "anogan", "triplegan", "vae", "stackgan", "sketchrnn"}
    assert all(x.protocol and x.paper and x.profiles for x in (*t.targets, *t.anchors))


def test_every_paper_number_is_a_paper_target_with_its_protocol_and_how_ours_differs():
    t = load_targets()
    paper = {x.model: x for x in t.targets if x.paper_number}
    assert set(paper) >= {"vae", "flow_vae", "flow_vae_deep", "pixelcnn", "pixelrnn", "pixelrnn_diagonal", "gan",
                          "aae", "anogan", "triplegan"}
    assert all(x.ours_differs and x.coverage.declared() for x in paper.values())
    assert paper["flow_vae"].number == 87.5 and "K = 10" in paper["flow_vae"].note  # the paper's K = 10 row
    assert paper["flow_vae_deep"].number == 85.1 and paper["vae"].number == 86.76
    assert paper["anogan"].coverage.declared() == {"classes": 10, "test_images": 10000, "inversion_steps": 500}
    assert paper["triplegan"].coverage.seeds >= 3 and paper["vae"].coverage.k == 5000
    assert paper["pixelcnn"].coverage.binarization == "fixed" == paper["pixelrnn"].coverage.binarization
    assert all(x.against == "ours" for x in t.targets if x.model not in paper)
    assert "(ours)" in next(x for x in t.targets if x.model == "cvae").text()


def test_the_report_holds_no_anchor_or_target_of_its_own():
    source = Path(report_module.__file__).read_text()
    for number in ("86.76", "81.30", "80.54", "79.20", "225", "340", "0.913", "0.948", "0.91", "99.3", "0.95"):
        assert not re.search(rf"(?<![\w.]){re.escape(number)}(?![\w.])", source), number
    assert "TARGETS = [" not in source and "ANCHORS = {" not in source


@pytest.mark.parametrize("change, message", [
    ({"numbr": 90.0}, "unknown key 'numbr'"),
    ({"model": "vea"}, "unknown model 'vea'"),
    ({"direction": "<<"}, "direction must be one of"),
    ({"number": "ninety"}, "number must be a number"),
    ({"profiles": ["gpu", "tpu"]}, "profiles must list some of"),
    ({"than": "models.gan.fd"}, "exactly one of number"),
    ({"against": "theirs"}, "against must be one of paper, ours"),
    ({"coverage": {"classes": 10, "images": 5}}, "coverage: unknown key 'images'"),
    ({"coverage": {"seeds": 0}}, "coverage: seeds must be a positive whole number"),
    ({"coverage": {"k": 50.5}}, "coverage: k must be a positive whole number"),
    ({"coverage": {"binarization": "static"}}, "coverage: binarization must be one of fixed, dynamic"),
    ({"coverage": "all"}, "coverage must be a dict"),
    ({"ours_differs": "bigger"}, "ours_differs is for a target against a paper's number"),
    ({"against": "paper", "coverage": {"k": 5000}}, "against paper needs ours_differs"),
    ({"against": "paper", "ours_differs": "bigger"}, "against paper needs coverage"),
])
def test_targets_file_is_checked_strictly(tmp_path, change, message):
    path = write_targets(tmp_path / "targets.yaml", targets=[TARGET, {**TARGET, **change}])
    with pytest.raises(TargetsError, match=re.escape(message)) as err:
        load_targets(path)
    assert "targets[1] (model" in str(err.value) and str(path) in str(err.value)  # names the file and the entry
    assert isinstance(err.value, GenzooError)  # the CLI prints it as one line


def test_a_paper_target_holds_the_papers_own_number(tmp_path):
    """Against a paper, the threshold is one of that measure's anchors: not a rounding, not another row."""
    paper = {**TARGET, "number": 87.5, "against": "paper", "coverage": {"k": 5000}, "ours_differs": "bigger net"}
    t = load_targets(write_targets(tmp_path / "ok.yaml", anchors=[ANCHOR], targets=[paper]))
    assert t.targets[0].paper_number and t.targets[0].coverage.k == 5000
    with pytest.raises(TargetsError, match=r"targets\[0\] \(model vae\): against paper, its number 85.0 must be one "
                                           r"of the anchors of evaluate.json:models.vae.test_nll \(87.5\)"):
        load_targets(write_targets(tmp_path / "rounded.yaml", anchors=[ANCHOR], targets=[{**paper, "number": 85.0}]))
    with pytest.raises(TargetsError, match="none declared"):
        load_targets(write_targets(tmp_path / "none.yaml", targets=[paper]))


def test_targets_file_rejects_unknown_sections_and_missing_keys(tmp_path):
    with pytest.raises(TargetsError, match="unknown section 'goals'"):
        load_targets(write_targets(tmp_path / "a.yaml", goals=[TARGET]))
    partial = {k: v for k, v in ANCHOR.items() if k != "protocol"}
    with pytest.raises(TargetsError, match=r"anchors\[0\] \(model vae\): missing key 'protocol'"):
        load_targets(write_targets(tmp_path / "b.yaml", anchors=[partial]))


def test_a_target_and_an_anchor_render_from_the_targets_file(tmp_path):
    metrics = write_metrics(tmp_path / "metrics", nll=89.5)
    relative = {**TARGET, "what": "codes beat pixels", "key": "models.vae.test_elbo", "direction": ">",
                "than": "models.vae.missing"}
    del relative["number"]
    t = load_targets(write_targets(tmp_path / "targets.yaml", anchors=[ANCHOR], targets=[TARGET, relative]))
    text = render(metrics, tmp_path, t)
    assert "| vae | test NLL ≤ 90.0 nats (ours) | ours | 89.50 | met |" in text  # this run's targets table
    assert "| vae | codes beat pixels (ours) | ours | -95.00 | not met |" in text  # against a missing value: not met
    assert "| 40 s (10 epochs) | 87.5 ± 0.5 nats (Someone et al. 2099, Table 9) |" in text  # the anchor, beside ours
    assert "| vae | test NLL ≤ 90.0 nats (ours) | Kingma & Welling 2014 | IWAE bound | gpu |" in text  # as declared
    assert "86.76" not in text and "Parzen LL ≥ 240" not in text  # nothing but the file's entries


def test_summary_has_a_row_per_model_with_paper_gpu_and_cpu_numbers(tmp_path):
    metrics = write_metrics(tmp_path / "metrics", nll=99.5)
    part = write_metrics(metrics / "gpu" / "part1", nll=85.25)
    evaluate = json.loads((part / "evaluate.json").read_text())
    evaluate["provenance"].update(profile="gpu", created="2026-11-25T10:00:00Z")
    (part / "evaluate.json").write_text(json.dumps(evaluate))
    (tmp_path / "README.md").write_text(f"# genzoo\n{START}\n{END}\nrest\n")
    report_stage(None, metrics, tmp_path / "README.md")
    readme = (tmp_path / "README.md").read_text()
    assert (f"{VAE_TARGET} 86.76 nats (Burda et al. 2016) | pending | ours: 85.25 (not the paper's recipe: "
            "784-512-512-50 ReLU, ~1.4M weights (the paper's 784-200-200-50 tanh, ~0.42M), 50k-step KL warm-up, "
            "cosine Adam; partial: 1,000 of 10,000 test images, k = 500 of 5,000) | 99.50 (partial: 1,000 of 10,000 "
            "test images, k = 500 of 5,000) | paper's: pending |") in readme
    assert ("| gan | Parzen LL ≥ 225 nats (the paper's) | 225 ± 2 nats (Goodfellow et al. 2014) | pending | pending | "
            "— | paper's: pending |") in readme
    assert ("| cvae | evaluator agrees with the asked label ≥ 95 % (ours) | — | — | pending | — | ours: pending |"
            in readme)
    assert "[docs/results.md](docs/results.md)" in readme and readme.endswith(f"{END}\nrest\n")
    assert '<img src="metrics/gpu/part1/figures/vae/samples.png"' in readme and "vae · gpu" in readme  # gallery
    results = (tmp_path / "docs" / "results.md").read_text()
    assert results.startswith("# genzoo results") and "## Summary" in results and "## GPU targets" in results
    assert "![vae samples](../metrics/figures/vae/samples.png)" in results  # linked from docs/
    assert "<html" in (metrics / "report.html").read_text()


def test_the_speed_table_gives_a_ratio_only_against_a_peer_on_the_same_gpu_model(tmp_path):
    from genzoo.stages.report import _peer_ratio
    from genzoo.targets import Peer, Targets

    gpu = tmp_path / "gpu"
    gpu.mkdir()
    row = {"steps_per_s": 100.0, "path": "plain", "cuda_graphs": True}
    (gpu / "bench_peers.json").write_text(json.dumps({"results": [
        {**row, "model": "vae", "batch_size": 128, "device": "NVIDIA H100 80GB HBM3", "seconds_per_60k_images": 0.1},
        {**row, "model": "vae", "batch_size": 128, "device": "NVIDIA H100 80GB HBM3", "seconds_per_60k_images": 0.05,
         "path": "distributed, 1 rank"},  # not the plain path: never the row compared
        {**row, "model": "gan", "batch_size": 64, "device": "NVIDIA H200", "seconds_per_60k_images": 0.5},
        {**row, "model": "aae", "batch_size": 64, "device": "NVIDIA H100 80GB HBM3", "seconds_per_60k_images": 2.0},
    ]}))
    peers = (Peer("vae", 128, "vae/main.py", 1.8, "H100", 12), Peer("gan", 64, "gan.py", 19.47, "H100", 12),
             Peer("aae", 64, "aae.py", 17.97, "H100", 12), Peer("dcgan", 64, "dcgan.py", 24.18, "H100", 12))
    rows = {line.split(" | ")[0][2:]: line for line in _peer_ratio(gpu, Targets(peers=peers)) if line.startswith("| ")}
    assert "| 0.100 (NVIDIA H100 80GB HBM3) | 18.0× | ≥ 12× | met |" in rows["vae"]
    assert "| 9.0× | ≥ 12× | not met |" in rows["aae"]
    assert "pending: no H100 bench (ours on NVIDIA H200: 0.500 s, not compared)" in rows["gan"]
    assert "×" not in rows["gan"].split("|")[6] and "pending: no gpu bench yet" in rows["dcgan"]


def test_the_flows_gain_is_the_twin_without_flows_minus_the_model_and_the_twin_never_stands_for_it(tmp_path):
    """A `flowless` run (K = 0, pipeline/conf/recipes.yaml) is a control: the report sets it beside the flow model
    and gives the difference, and never shows it as the flow model's own number, even when it is the latest. The
    paper recipe has its own twin (`paper_flowless`), and each twin pairs only with its own recipe."""
    metrics = write_metrics(tmp_path / "metrics")
    for part, nll, created, recipe in [("flows", 86.0, "2026-11-20T10:00:00Z", None),
                                       ("twin", 88.5, "2026-11-25T10:00:00Z", "flowless"),
                                       ("paper", 87.0, "2026-11-26T10:00:00Z", "paper"),
                                       ("ptwin", 89.25, "2026-11-27T10:00:00Z", "paper_flowless")]:
        folder = write_metrics(metrics / "gpu" / part)
        evaluate = json.loads((folder / "evaluate.json").read_text())
        entry = {**evaluate["models"].pop("vae"), "test_nll": nll, **({"recipe": recipe} if recipe else {})}
        evaluate["models"]["flow_vae"] = entry
        evaluate["provenance"].update(profile="gpu", created=created)
        (folder / "evaluate.json").write_text(json.dumps(evaluate))
        (folder / "vae.json").rename(folder / "flow_vae.json")
        (folder / "run.json").write_text(json.dumps({"models": {"flow_vae": {
            "epochs": 1000, "profile_epochs": 1000, **({"recipe": recipe} if recipe else {})}}}))
    text = render(metrics, tmp_path)
    overview = text.split("## GPU targets", 1)[1].split("\n## ", 1)[0]
    assert "| flow_vae | test NLL ≤ 87.5 nats (the paper's, K = 10) | paper | 87.00 |" in overview
    assert "88.50" not in overview and "89.25" not in overview
    gain = text.split("## What the planar flows add (gpu)", 1)[1].split("\n## ", 1)[0]
    assert ("| flow_vae | K = 10 | ours (twin: `flowless`) | 86.00 (part `flows` (2026-11-20, 1000 of 1000 epochs, "
            "on cpu (2 cores))) | 88.50 (part `twin` (2026-11-25, 1000 of 1000 epochs, on cpu (2 cores))) | +2.50 |"
            ) in gain
    assert ("| flow_vae | K = 10 | paper (twin: `paper_flowless`) | 87.00 (part `paper` (2026-11-26, 1000 of 1000 "
            "epochs, on cpu (2 cores))) | 89.25 (part `ptwin` (2026-11-27, 1000 of 1000 epochs, on cpu (2 cores))) | "
            "+2.25 |") in gain
    assert "| flow_vae_deep | K = 80 | ours (twin: `flowless`) | pending | pending | pending |" in gain
    assert "GPU profile, part `twin` (pipeline/gpu_models.py, recipe `flowless`)" in text
