"""Commands that are not pipeline stages: benchmarks, GPU parts, the dvc.yaml generator, reproduction checks."""
