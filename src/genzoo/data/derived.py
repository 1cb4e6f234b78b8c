"""Derived data sets for the translation family (issue 6, DESIGN.md §3), built from the base uint8 splits.

Every set is a pure function of a base split ({"x": uint8 (N,1,28,28), "y": int64 (N,)}), the set's name, the
split's name and one seed: randomness comes from a torch.Generator seeded with
derived_seed(seed, "derived:<name>:<split>"), so `derive` writes byte-identical files on every run.

Sets and keys (every tensor of one dict has the same first dimension, the engine batches them together):
- paired (Pix2Pix): "a" edge map uint8 {0,255} (N,1,28,28), "b" the digit, "y".
- superres (EnhanceNet): "a" 7x7 area-downsampled digit (N,1,7,7), "b" the digit, "y".
- unpaired (CycleGAN): train: the rows in a seeded order, "a" = thin(first half), "b" = thick(the disjoint second
  half; an odd last row is dropped), "y_a", "y_b";
  val/test: "a" thin(x), "b" thick(x) of the same x (the hidden pair), "y".
- multidomain (StarGAN): "x" (N,3,28,28) coloured digit, "y", "colour" (0 red, 1 green, 2 blue), "stroke"
  (0 thin, 1 regular, 2 thick), "set"; train rows of set 0 carry only colour (stroke = -1), rows of set 1 only
  stroke (colour = -1); val/test carry both labels and "set" = -1 (no set: fully labelled).
- synthetic (SimGAN): "a" digits rendered from matplotlib's DejaVu fonts with affine jitter, "y_a" (balanced);
  "b" the real digits of the split, "y".

Choices (checked on pictures of real MNIST):
- Edges: Sobel gradient magnitude of x/255 (zero padding), lit where it exceeds EDGE_THRESHOLD. A stroke of
  MNIST is 2-4 px wide, so the map is the digit's outline (both flanks of each stroke).
- Strokes: thick = grey dilation with the 4-neighbour cross (max over the pixel and its 4 neighbours, ~2 px
  wider); thin = grey erosion with the 2x2 square (~1 px narrower) with the contrast stretched back to the
  peak. The 3x3 square or the cross erodes MNIST's 2-3 px strokes away (see `thin`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.data.loading import SPLITS, load_split, read_split_file, require_tensors
from genzoo.data.naming import MNIST, Naming
from genzoo.data.preprocess import derived_seed
from genzoo.data.styles import COLOURS, STROKES, colourize, stroke, thick, thin  # noqa: F401 (re-exported)
from genzoo.engine.errors import DataError
from genzoo.engine.io import save_torch, write_json

SETS = ("paired", "superres", "unpaired", "multidomain", "synthetic")  # in data/derived/<set>/
# Sets in a folder of their own beside data/derived (data/<set>/): every translation model depends on
# data/derived as a whole, so a set added inside it would retrain all of them for nothing. `captions`
# (StackGAN) is made here by `derive`; `strokes` (Sketch-RNN) by its own stage (genzoo.data.strokes).
BESIDE = ("captions", "strokes")
EDGE_THRESHOLD = 1.5  # Sobel magnitude on [0,1] intensities: a full 0->1 step gives 4; 1.5 keeps a thin outline
SUPERRES_FACTOR = 4  # 28 -> 7
_HINT = "run `dvc repro derive` to (re)build it"


# ---------------------------------------------------------------- pure transforms (uint8 in, uint8 out)


def edges(x: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Binary edge map {0,255} uint8 (N,1,H,W): Sobel gradient magnitude of x/255 above `threshold`
    (zero padding; written as separable shifted differences, ~10x faster than conv2d on one CPU core)."""
    p = F.pad(x.float() / 255, (1, 1, 1, 1))  # (N, 1, H+2, W+2)
    smooth_rows = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]  # [1,2,1] down the columns
    smooth_cols = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]  # [1,2,1] along the rows
    gx = smooth_rows[..., 2:] - smooth_rows[..., :-2]  # (N, 1, H, W)
    gy = smooth_cols[..., 2:, :] - smooth_cols[..., :-2, :]
    magnitude = (gx * gx + gy * gy).sqrt()
    return ((magnitude > threshold).to(torch.uint8) * 255).contiguous()


def downsample(x: torch.Tensor, factor: int = SUPERRES_FACTOR) -> torch.Tensor:
    """Area downsampling (mean over factor x factor blocks), rounded. uint8 (N,C,H,W) -> (N,C,H/f,W/f)."""
    return F.avg_pool2d(x.float(), factor).round().clamp(0, 255).to(torch.uint8)


def bicubic_upsample(a: torch.Tensor, factor: int = SUPERRES_FACTOR) -> torch.Tensor:
    """The super-resolution baseline: uint8 (N,C,h,w) -> floats in [0,1] (N,C,h*f,w*f), bicubic, clamped."""
    up = F.interpolate(a.float() / 255, scale_factor=factor, mode="bicubic", align_corners=False)
    return up.clamp(0, 1)


# ---------------------------------------------------------------- synthetic digits from matplotlib's fonts

FONTS = (  # the DejaVu faces that ship with matplotlib (mpl-data/fonts/ttf): 3 families x weights x slants
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
)
GLYPH_SIZE = 112  # high-resolution canvas side: 4 x 28
_BOX = 20 / 28  # MNIST: the digit fits a 20x20 box (aspect kept) in the 28x28 frame, centred by mass
# Affine jitter per image (about the centre of mass, so the mass stays centred as in MNIST, up to the shift).
JITTER = {"rotation_deg": 12.0, "scale": (0.85, 1.05), "shear": 0.15, "shift_px": 1.0}

# MNIST puts the centre of mass at pixel index 14 (coordinate 14.5 of 28, half a pixel off the frame's centre)
_MASS_OFFSET = 0.5
_SUPER = 2  # supersampling of the jittered glyph before the 2x2 area downsampling to 28x28

_GLYPHS: torch.Tensor | None = None


def glyphs() -> torch.Tensor:
    """(len(FONTS), 10, G, G) floats in [0, 1]: digit d of font f, its bounding box's longer side scaled to
    20/28 of the canvas and its centre of mass at the canvas centre. Rendered once per process (~1 s)."""
    global _GLYPHS
    if _GLYPHS is None:
        _GLYPHS = _render_glyphs()
    return _GLYPHS


def _render_glyphs() -> torch.Tensor:
    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    size = GLYPH_SIZE
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    out = torch.zeros(len(FONTS), 10, size, size)
    for f, font in enumerate(FONTS):
        prop = FontProperties(fname=folder / font)
        for digit in range(10):
            path = TextPath((0, 0), str(digit), size=100, prop=prop)
            box = path.get_extents()
            scale = _BOX * size / max(box.width, box.height)
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            # glyph units -> display pixels (both with y up; Agg flips to image rows itself)
            placed = Affine2D().translate(-centre[0], -centre[1]).scale(scale).translate(size / 2, size / 2)
            renderer = RendererAgg(size, size, 72)
            gc = renderer.new_gc()
            gc.set_linewidth(0)
            renderer.draw_path(gc, path, placed, (1.0, 1.0, 1.0, 1.0))
            gc.restore()
            ink = torch.frombuffer(bytearray(renderer.buffer_rgba()), dtype=torch.uint8).view(size, size, 4)
            out[f, digit] = ink[..., 3].float() / 255  # alpha = coverage (the canvas starts transparent)
    # centre each glyph by mass (integer shift at 4x resolution: within 1/8 px of MNIST's rule)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    mass = out.sum((-1, -2)).clamp(min=1e-6)
    cy = (out.sum(-1) * grid).sum(-1) / mass
    cx = (out.sum(-2) * grid).sum(-1) / mass
    for f in range(len(FONTS)):
        for digit in range(10):
            dy, dx = round(size / 2 - cy[f, digit].item()), round(size / 2 - cx[f, digit].item())
            out[f, digit] = torch.roll(out[f, digit], (dy, dx), dims=(0, 1))  # margins are empty: no wrap
    return out


def render_synthetic(labels: torch.Tensor, gen: torch.Generator, size: int = 28, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N,1,size,size): digit labels[i] in a random font with random affine jitter, MNIST-framed."""
    n = len(labels)
    table = glyphs()
    font = torch.randint(len(FONTS), (n,), generator=gen)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(JITTER["rotation_deg"])
    lo, hi = JITTER["scale"]
    scale = lo + (hi - lo) * torch.rand(n, generator=gen)
    shear = (torch.rand(n, generator=gen) * 2 - 1) * JITTER["shear"]
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * JITTER["shift_px"] + _MASS_OFFSET
    shift = shift * 2 / size  # pixels -> normalised coordinates
    cos, sin = angle.cos(), angle.sin()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    shr = torch.eye(2).repeat(n, 1, 1)
    shr[:, 0, 1] = shear
    forward = rot @ shr * scale[:, None, None]  # (N, 2, 2): glyph coords -> image coords
    inverse = torch.linalg.inv(forward)
    theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)  # (N, 2, 3): image -> glyph coords
    # pixel-centre coordinates of the 2x supersampled output, normalised to [-1, 1] (align_corners=False)
    axis = (torch.arange(_SUPER * size, dtype=torch.float32) + 0.5) / (_SUPER * size) * 2 - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    base = torch.stack([xx, yy, torch.ones_like(xx)], -1).view(1, -1, 3)  # (1, P, 3): x, y, 1
    out = torch.empty(n, 1, size, size, dtype=torch.uint8)
    glyph_id = font * 10 + labels.cpu().long()
    flat = table.view(-1, 1, GLYPH_SIZE, GLYPH_SIZE)
    # One grid_sample per glyph, its images' sampling grids stacked along the height: the glyph is never
    # copied per image, which keeps 55k images to a few seconds on one core.
    for g in glyph_id.unique().tolist():
        rows = (glyph_id == g).nonzero().flatten()
        for part in rows.split(chunk):
            grid = (base @ theta[part].transpose(1, 2)).view(1, -1, _SUPER * size, 2)  # (1, B*56, 56, 2)
            hi_res = F.grid_sample(flat[g : g + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            hi_res = hi_res.view(len(part), 1, _SUPER * size, _SUPER * size)  # (B, 1, 56, 56)
            out[part] = (F.avg_pool2d(hi_res, _SUPER) * 255).round().clamp(0, 255).to(torch.uint8)
    return out


# ---------------------------------------------------------------- the sets


def _generator(seed: int, name: str, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, f"derived:{name}:{split}"))


def build(name: str, split_dict: dict[str, torch.Tensor], seed: int, split: str) -> dict[str, torch.Tensor]:
    """One split of one derived set from a base split {"x": uint8 (N,1,H,W), "y": int64 (N,)} (CPU)."""
    if name not in (*SETS, "captions"):
        raise DataError(f"unknown derived set {name!r}; choose one of {', '.join((*SETS, 'captions'))}.")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    x, y = split_dict["x"].cpu(), split_dict["y"].cpu().long()
    gen = _generator(seed, name, split)
    if name == "captions":
        from genzoo.data.captions import build_captions

        return build_captions({"x": x, "y": y}, gen)
    if name == "paired":
        return {"a": edges(x), "b": x.clone(), "y": y.clone()}
    if name == "superres":
        return {"a": downsample(x), "b": x.clone(), "y": y.clone()}
    if name == "unpaired":
        if split != "train":
            return {"a": thin(x), "b": thick(x), "y": y.clone()}
        half = len(x) // 2  # an odd row is dropped so both domains have the same count
        order = torch.randperm(len(x), generator=gen)
        ia, ib = order[:half], order[half : 2 * half]
        return {"a": thin(x[ia]), "b": thick(x[ib]), "y_a": y[ia], "y_b": y[ib]}
    if name == "multidomain":
        n = len(x)
        colour = torch.randint(3, (n,), generator=gen)
        kind = torch.randint(3, (n,), generator=gen)
        images = colourize(stroke(x, kind), colour)  # (N, 3, H, W)
        if split != "train":
            return {"x": images, "y": y.clone(), "colour": colour, "stroke": kind, "set": torch.full((n,), -1)}
        member = torch.zeros(n, dtype=torch.int64)
        member[torch.randperm(n, generator=gen)[n // 2 :]] = 1  # half the rows (rounded down) in set 0
        colour = torch.where(member == 0, colour, -1)
        kind = torch.where(member == 1, kind, -1)
        return {"x": images, "y": y.clone(), "colour": colour, "stroke": kind, "set": member}
    # synthetic
    n = len(x)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=gen)]  # balanced, shuffled
    return {"a": render_synthetic(labels, gen, size=x.shape[-1]), "y_a": labels, "b": x.clone(), "y": y.clone()}


# ---------------------------------------------------------------- which sets a data set has


def not_applicable(name: str | None, names: Naming) -> str | None:
    """Why set `name` (a model's `dataset`; None = the base images) cannot be made from the data set `names`
    describes, in one clause; None when it can. The synthetic set renders the digits 0-9 from fonts: on any
    other classes (clothes) it has nothing to render. The captions name at most 10 classes. Every other set
    (edges, downsampling, thin/thick strokes, colours, strokes traced from skeletons) works on any grey image."""
    if name == "synthetic" and not names.digits:
        shown = ", ".join(names.classes[:4]) + (", ..." if len(names.classes) > 4 else "")
        return (f"SimGAN's synthetic set renders the digits 0-9 from fonts, and the classes of {names.dataset} "
                f"are not digits ({shown})")
    if name == "captions":
        from genzoo.data.captions import not_applicable as captions_not_applicable

        return captions_not_applicable(names.classes)
    return None


# ---------------------------------------------------------------- files: derive, load_set, preview

# Per set and split: key -> (dtype, channels, size) with size "full" (the base H, W) or "low" (H/4, W/4);
# labels are (N,) int64 (channels/size None).
_IMG, _LAB = torch.uint8, torch.int64
_SPEC: dict[str, dict[str, dict[str, tuple]]] = {
    "paired": {s: {"a": (_IMG, 1, "full"), "b": (_IMG, 1, "full"), "y": (_LAB, None, None)} for s in SPLITS},
    "superres": {s: {"a": (_IMG, 1, "low"), "b": (_IMG, 1, "full"), "y": (_LAB, None, None)} for s in SPLITS},
    "unpaired": {
        "train": {"a": (_IMG, 1, "full"), "b": (_IMG, 1, "full"), "y_a": (_LAB, None, None), "y_b": (_LAB, None, None)},
        **{s: {"a": (_IMG, 1, "full"), "b": (_IMG, 1, "full"), "y": (_LAB, None, None)} for s in ("val", "test")},
    },
    "multidomain": {
        s: {"x": (_IMG, 3, "full"), **{k: (_LAB, None, None) for k in ("y", "colour", "stroke", "set")}}
        for s in SPLITS
    },
    "synthetic": {
        s: {"a": (_IMG, 1, "full"), "y_a": (_LAB, None, None), "b": (_IMG, 1, "full"), "y": (_LAB, None, None)}
        for s in SPLITS
    },
}


def set_path(root: Path, name: str, split: str) -> Path:
    """root = data/derived: data/derived/<set>/<split>.pt, or data/<set>/<split>.pt for the sets BESIDE it."""
    return (Path(root).parent if name in BESIDE else Path(root)) / name / f"{split}.pt"


def _check(data: object, name: str, split: str, where: str) -> None:
    """Raise DataError unless `data` has exactly the keys, dtypes and shapes that `build` makes."""
    spec = _SPEC[name][split]
    require_tensors(data, spec, where, _HINT)
    full = next(data[k].shape[-2:] for k, (_, _, size) in spec.items() if size == "full")
    n = len(data[next(iter(spec))])
    for key, (dtype, channels, size) in spec.items():
        t = data[key]
        if channels is None:
            ok = t.dtype == dtype and t.shape == (n,)
        else:
            hw = tuple(full) if size == "full" else (full[0] // SUPERRES_FACTOR, full[1] // SUPERRES_FACTOR)
            ok = t.dtype == dtype and t.shape == (n, channels, *hw)
        if not ok:
            raise DataError(f"{where}: unexpected tensor {key} {t.dtype} {tuple(t.shape)} (N = {n}); {_HINT}.")


def load_set(root: Path, name: str, split: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """One split of one derived set (the dict `build` made), validated, on `device`. root = data/derived; the
    sets BESIDE it are read from data/<set>/ by their own modules."""
    if name not in (*SETS, *BESIDE):
        raise DataError(f"unknown derived set {name!r}; choose one of {', '.join((*SETS, *BESIDE))}.")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if name == "captions":
        from genzoo.data.captions import load_captions

        return load_captions(set_path(root, name, split).parent, split, device)
    if name == "strokes":
        from genzoo.data.strokes import load_strokes

        return load_strokes(set_path(root, name, split).parent, split, device)
    return read_split_file(set_path(root, name, split).parent, split, _HINT, device,
                           lambda data, where: _check(data, name, split, where))


def derive(processed_dir: Path, out_dir: Path, seed: int, names: Naming = MNIST) -> dict:
    """Build every set and split from the base splits in `processed_dir`; write out_dir/<set>/<split>.pt
    (atomically, byte-identical for the same input and seed) and out_dir/meta.json; return the meta dict.
    A set that makes no sense on the data set `names` describes (`not_applicable`) is left out, and meta.json
    says why under "not_applicable" (a key present only then: MNIST's meta.json is as it always was)."""
    processed_dir, out_dir = Path(processed_dir), Path(out_dir)
    base = {split: load_split(processed_dir, split) for split in SPLITS}
    meta: dict = {"seed": seed, "sets": {}}
    skipped = {name: why for name in (*SETS, "captions") if (why := not_applicable(name, names)) is not None}
    digest = hashlib.sha256()
    for name in SETS:
        if name in skipped:
            continue
        entry: dict = {"counts": {}, "shapes": {}, "sha256": {}}
        for split in SPLITS:
            data = build(name, base[split], seed, split)
            _check(data, name, split, f"build({name!r}, split={split!r})")
            path = save_torch(data, set_path(out_dir, name, split))
            file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{name}/{split}:{file_hash}".encode())
            entry["counts"][split] = len(next(iter(data.values())))
            entry["shapes"][split] = {k: list(v.shape[1:]) for k, v in data.items()}
            entry["sha256"][split] = file_hash
        meta["sets"][name] = entry
    meta["content_hash"] = digest.hexdigest()
    meta["choices"] = {
        "edge_threshold": EDGE_THRESHOLD,
        "morphology": "thick: grey dilation, 4-neighbour cross; thin: grey erosion, 2x2 square, contrast "
        "stretched back to the image's peak",
        "palette": list(COLOURS),
        "strokes": list(STROKES),
        "superres_factor": SUPERRES_FACTOR,
        "fonts": list(FONTS),
        "jitter": JITTER,
        "multidomain_train_sets": "set 0: colour only (stroke -1); set 1: stroke only (colour -1); val/test: set -1",
    }
    if skipped:
        meta["not_applicable"] = skipped
    write_json(out_dir / "meta.json", meta)
    if "captions" in skipped:
        return meta
    return {**meta, "sets": {**meta["sets"], "captions": _derive_captions(base, out_dir, seed)}}


def _derive_captions(base: dict, out_dir: Path, seed: int) -> dict:
    """StackGAN's captioned digits, beside out_dir (data/captions/<split>.pt and its own meta.json)."""
    entry: dict = {"seed": seed, "counts": {}, "sha256": {}}
    for split in SPLITS:
        data = build("captions", base[split], seed, split)
        path = save_torch(data, set_path(out_dir, "captions", split))
        entry["counts"][split] = len(data["y"])
        entry["sha256"][split] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_json(set_path(out_dir, "captions", "train").parent / "meta.json", entry)
    return entry


def _grey(t: torch.Tensor) -> torch.Tensor:
    """uint8 (N,C,H,W) -> floats (N,3,H,W) in [0, 1]."""
    t = t.float() / 255
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def _interleave(*columns: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) each -> (k*N,3,H,W) with the columns side by side per example (a|b|a|b ...)."""
    return torch.stack(columns, 1).flatten(0, 1)


def preview(root: Path, rows: int = 8, sets: tuple[str, ...] = SETS) -> dict[str, tuple[torch.Tensor, int]]:
    """{set: ((N,3,H,W) floats in [0,1], nrow)} from the test split of each of `sets` (those derive made), for the
    report: paired/unpaired: source|target pairs (4 per row); superres: low-res (nearest) | bicubic | truth (3 per
    row); multidomain: one column per colour x stroke combination; synthetic: synthetic digits 0-9 (top
    half) above real ones (bottom half)."""
    grids: dict[str, tuple[torch.Tensor, int]] = {}
    per_row = 4
    k = rows * per_row
    d = load_set(root, "paired", "test")
    grids["paired"] = (_interleave(_grey(d["a"][:k]), _grey(d["b"][:k])), 2 * per_row)
    d = load_set(root, "superres", "test")
    m = rows * 3
    low = F.interpolate(d["a"][:m].float(), scale_factor=SUPERRES_FACTOR, mode="nearest")
    bicubic = bicubic_upsample(d["a"][:m]).expand(-1, 3, -1, -1)
    grids["superres"] = (_interleave(_grey(low.to(torch.uint8)), bicubic, _grey(d["b"][:m])), 9)
    d = load_set(root, "unpaired", "test")
    grids["unpaired"] = (_interleave(_grey(d["a"][:k]), _grey(d["b"][:k])), 2 * per_row)
    d = load_set(root, "multidomain", "test")
    columns = []
    for c in range(3):
        for s in range(3):
            idx = ((d["colour"] == c) & (d["stroke"] == s)).nonzero().flatten()[:rows]
            col = _grey(d["x"][idx])
            if len(col) < rows:  # a tiny split may lack a combination: pad with black
                col = torch.cat([col, torch.zeros(rows - len(col), *col.shape[1:])])
            columns.append(col)
    grids["multidomain"] = (torch.stack(columns, 1).flatten(0, 1), 9)
    if "synthetic" not in sets:
        return grids
    d = load_set(root, "synthetic", "test")
    half = max(rows // 2, 1)
    picks = []
    for source, labels in ((d["a"], d["y_a"]), (d["b"], d["y"])):
        for r in range(half):
            for digit in range(10):
                idx = (labels == digit).nonzero().flatten()
                picks.append(_grey(source[idx[r : r + 1]]) if len(idx) > r else torch.zeros(1, 3, *source.shape[-2:]))
    grids["synthetic"] = (torch.cat(picks), 10)
    return grids
