"""The `derive` stage: the translation models' sets (paired, superres, unpaired, multidomain, synthetic) and
StackGAN's captions, made from the base tensors, with a preview grid of each."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.derived import SETS, derive, preview
from genzoo.data.loading import load_meta
from genzoo.data.naming import naming
from genzoo.engine.pictures import save_pictures
from genzoo.params import Params


def derive_stage(params: Params, data: Path, out: Path, figures: Path) -> None:
    """The derived sets (DESIGN.md §3) and a preview grid of each for the report; a set that makes no sense on
    the data set (SimGAN's synthetic digits on clothes) is left out with one line saying why."""
    names = naming(load_meta(data))
    meta = derive(data, out, seed=params.data.derive_seed, names=names)
    save_pictures(preview(out, sets=tuple(s for s in SETS if s in meta["sets"])), figures)
    print(f"derived sets in {out}: " + "; ".join(f"{name} {entry['counts']}" for name, entry in meta["sets"].items()))
    for name, why in meta.get("not_applicable", {}).items():
        print(f"derive: no {name} set for {names.dataset}: {why}")
