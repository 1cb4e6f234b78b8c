"""genzoo.tools.bench: steps per second of a model's train_step, and what an epoch of it costs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from genzoo.engine.tracking import command_line
from genzoo.tools.bench import run_bench


def test_bench_times_a_gan_with_k_batches_per_step(tiny_params, tiny_processed, tmp_path):
    tiny_params.models["gan"] = dataclasses.replace(tiny_params.model("gan"), d_steps=2)
    (row,) = run_bench(["gan"], tiny_params, tiny_processed, steps=3, batch_sizes=[8], out=tmp_path / "b.json")
    assert row["batch_size"] == 8 and row["steps_per_s"] > 0 and not row["cuda_graphs"]
    train_images = row["train_images"]  # one step consumes 2 batches of 8: an epoch is train_images / 16 steps
    assert row["seconds_per_epoch"] == pytest.approx(train_images // 16 / row["steps_per_s"], rel=0.02)
    assert row["seconds_per_60k_images"] == pytest.approx(60000 / 16 / row["steps_per_s"], rel=0.02)
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["results"][0]["model"] == "gan"
    made = written["provenance"]  # which code, on which machine, by which command
    assert made["commit"] and isinstance(made["dirty"], (bool, type(None))) and made["hardware"].endswith(" cores")
    assert made["command"] == command_line()  # this process's (a pytest worker's: whatever started it)


def test_bench_times_the_distributed_path_with_one_rank_beside_the_plain_one(tiny_params, tiny_processed):
    import torch.distributed as dist

    plain, ranks = run_bench(["vae"], tiny_params, tiny_processed, steps=3, batch_sizes=[8], out=None,
                             distributed_path=True)
    assert (plain["path"], ranks["path"]) == ("plain", "distributed, 1 rank")
    assert ranks["steps_per_s"] > 0 and not ranks["cuda_graphs"]
    assert not dist.is_initialized()  # the one-rank group is gone after


def test_bench_times_a_semi_supervised_model_with_the_shared_few_labels(tiny_params, tiny_processed):
    (row,) = run_bench(["triplegan"], tiny_params, tiny_processed, steps=2, batch_sizes=[8], out=None)
    assert row["model"] == "triplegan" and row["steps_per_s"] > 0


def test_bench_precision_overrides_a_sections_own_and_rows_say_the_one_trained_at(tiny_params, tiny_processed):
    """Without --precision a model times at its section's CPU precision; with it, every model at the one asked."""
    tiny_params.engine = dataclasses.replace(tiny_params.engine, device="cpu")
    tiny_params.models["vae"] = dataclasses.replace(tiny_params.model("vae"), cpu_precision="bf16")
    own, asked = (run_bench(["vae"], tiny_params, tiny_processed, steps=2, batch_sizes=[8], out=None, precision=p)[0]
                  for p in (None, "fp32"))
    assert (own["precision"], asked["precision"]) == ("bf16", "fp32")


def test_bench_times_the_steps_asked_even_where_a_profile_caps_the_section(tiny_params, tiny_processed, monkeypatch):
    """A cpu profile's `max_steps` caps its training runs; a bench that honoured it would time fewer steps than it
    divides by and report a steps/s several times too high."""
    import genzoo.tools.bench as bench

    trained = []
    real_fit = bench.fit

    def counting_fit(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        trained.append(result.steps)
        return result

    monkeypatch.setattr(bench, "fit", counting_fit)
    tiny_params.models["vae"] = dataclasses.replace(tiny_params.model("vae"), max_steps=1)
    run_bench(["vae"], tiny_params, tiny_processed, steps=4, batch_sizes=[8], out=None)
    assert trained == [bench.WARMUP_STEPS, 4]
