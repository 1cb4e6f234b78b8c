"""The `strokes` stage: Sketch-RNN's stroke-5 sequences, traced from the base images' skeletons offline (source
`mnist`: whatever `data.dataset` is) or read from QuickDraw's files (`strokes.source`), with a preview grid."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.download import mirror_folders
from genzoo.data.loading import load_meta
from genzoo.data.strokes import make_strokes, preview
from genzoo.engine.io import write_json
from genzoo.engine.pictures import save_pictures
from genzoo.params import Params


def strokes_stage(params: Params, data: Path, out: Path, raw: Path, checksums: Path, figures: Path) -> None:
    cfg = params.strokes
    classes = load_meta(data)["classes"] if cfg.source == "mnist" else None  # traced from the base data set
    meta = make_strokes(cfg.source, cfg.categories, cfg.per_category, cfg.max_len, cfg.epsilon, data, out, raw,
                        mirror_folders(params.data.mirror), checksums, classes)
    if not checksums.exists():  # a DVC output: MNIST strokes download nothing, so the record starts empty
        write_json(checksums, {})
    save_pictures(preview(out), figures)
    traced = f", traced from {params.data.dataset}'s skeletons" if cfg.source == "mnist" else ""
    print(f"strokes ({cfg.source}{traced}) in {out}: {meta['counts']}")
