"""The `preprocess` stage: IDX files -> uint8 tensors, the seeded validation split, the fixed binarization."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.preprocess import preprocess
from genzoo.params import Params


def preprocess_stage(params: Params, raw: Path, out: Path) -> None:
    meta = preprocess(raw / params.data.dataset, out, dataset=params.data.dataset, val_size=params.data.val_size,
                      split_seed=params.data.split_seed, binarize_seed=params.data.binarize_seed)
    print(f"{meta['dataset']}: {meta['counts']} -> {out}")
