"""The `derive` stage: the translation models' sets (paired, superres, unpaired, multidomain, synthetic) and
StackGAN's captions, made from the base tensors, with a preview grid of each."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.derived import derive, preview
from genzoo.engine.pictures import save_pictures
from genzoo.params import Params


def derive_stage(params: Params, data: Path, out: Path, figures: Path) -> None:
    """The derived sets (DESIGN.md §3) and a preview grid of each for the report."""
    meta = derive(data, out, seed=params.data.derive_seed)
    save_pictures(preview(out), figures)
    print(f"derived sets in {out}: " + "; ".join(f"{name} {entry['counts']}" for name, entry in meta["sets"].items()))
