"""Stroke data for Sketch-RNN (Ha & Eck, 2018, "A Neural Representation of Sketch Drawings"): MNIST digits
traced into pen strokes, or QuickDraw sketches, both in the paper's stroke-5 format on a 28x28 pixel canvas.

The format (fixed; models code against it). A split is a dict of tensors, every key with the same first
dimension N (the engine batches them together):
- "strokes": float32 (N, max_len, 5), rows (dx, dy, p1, p2, p3) in PIXEL units of a 28x28 canvas, x to the
  right (column), y down (row); pixel (row r, column c) covers [c, c+1) x [r, r+1), its centre is
  (c + 0.5, r + 0.5). Row i is the offset from the previous pen position to point i; the pen starts at the
  canvas centre (14.0, 14.0), so point i sits at CENTRE + cumsum(offsets)[i].
  p1 = 1: the pen stays down after point i (a line is drawn from point i to point i+1);
  p2 = 1: the pen lifts after point i (no line to the next point; the last real point has p2 = 1);
  p3 = 1: end of the sketch: rows length..max_len-1 are exactly (0, 0, 0, 0, 1). Every sequence has at least
  one end row (length <= max_len - 1).
- "length": int64 (N,), the number of real points.
- "y": int64 (N,), the label (MNIST digit, or QuickDraw category index).
- "digit": int64 (N,): the MNIST digit, or -1 for QuickDraw rows (the MNIST evaluator's accuracy means
  something only where digit >= 0).

`rasterize` draws any such tensor (a model's outputs too: the pen state of a row is the argmax of its
(p1, p2, p3)) back to 1x28x28 images in [0, 1], anti-aliased, with a pen WIDTH chosen so that the frozen MNIST
evaluator reads rasterized real test strokes as well as possible: 97.2 % of the 10k test digits at WIDTH 2.0
(1.0: 96.5, 1.5: 97.2, 2.5: 97.0, 3.0: 96.9; the originals: 99.3 %). That is the ceiling a model's rasterized
reconstructions can be expected to reach; the misses are Zhang-Suen's, on blobby digits (filled loops).

MNIST (build_mnist_strokes): ink = uint8 >= THRESHOLD, Zhang-Suen thinning, tracing from endpoints, RDP with
EPSILON = 1 px (0.5 keeps the skeleton's pixel staircases as wiggles; 1.0 draws clean lines): 8.1 points per
digit on average, at most 25, so max_len 64 drops none; all 70k digits take ~40 s of one core.
QuickDraw (make_strokes source "quickdraw", genzoo.data.quickdraw): the sketch-rnn .npz files, read without
trusting their pickles, each sketch scaled so its bounding box's longer side is 20 px (MNIST's box) and centred
on the canvas.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from genzoo.data.loading import SPLITS, load_split, read_split_file, require_tensors
from genzoo.engine.errors import DataError
from genzoo.engine.io import save_torch, write_json

CENTRE = 14.0  # the pen starts at (CENTRE, CENTRE), the middle of the 28x28 canvas
WIDTH = 2.0  # pen width in pixels (see rasterize); chosen with the frozen evaluator on rasterized test strokes
THRESHOLD = 128  # ink: uint8 >= this (see skeletonize)
EPSILON = 1.0  # RDP tolerance in pixels
MAX_LEN = 64
QUICKDRAW_BOX = 20.0  # px: each QuickDraw sketch's bounding box's longer side, centred (MNIST's 20x20 box)
_HINT = "run `dvc repro strokes` to (re)build it"
_CHUNK_ELEMENTS = 4_000_000  # rasterize: sketches x segments x pixels per chunk (~16 MB per float temporary)


# ---------------------------------------------------------------- drawing


def points(strokes: torch.Tensor) -> torch.Tensor:
    """Absolute pen positions (N, T, 2) = CENTRE + cumsum of the (dx, dy) offsets. (N,T,5) -> (N,T,2)."""
    return CENTRE + strokes[..., :2].float().cumsum(1)


def pen_state(strokes: torch.Tensor) -> torch.Tensor:
    """(N,T) int64: 0 pen down (p1), 1 pen up (p2), 2 end (p3), the argmax of each row's (p1, p2, p3)."""
    return strokes[..., 2:5].argmax(-1)


def drawn_segments(strokes: torch.Tensor) -> torch.Tensor:
    """(N, T-1) bool: segment i (point i -> point i+1) is drawn when row i's pen is down and neither row is
    at or past the sketch's end (the first row whose pen state is p3)."""
    state = pen_state(strokes)  # (N, T)
    alive = (state == 2).long().cumsum(1) == 0  # (N, T): before the first end row
    return (state[:, :-1] == 0) & alive[:, :-1] & alive[:, 1:]


def rasterize(strokes: torch.Tensor, size: int = 28, width: float = WIDTH) -> torch.Tensor:
    """Draw stroke-5 sketches: (N, T, 5) floats -> (N, 1, size, size) floats in [0, 1], on strokes' device.

    Each pixel's ink is clamp(width/2 + 0.5 - d, 0, 1), d the distance from the pixel centre to the nearest
    drawn segment: a pen `width` px wide with a one-pixel linear anti-aliasing ramp. Vectorized over sketches,
    segments and pixels (chunked over N to bound memory); no loop over sketches."""
    strokes = strokes.float()
    n, t = strokes.shape[:2]
    device = strokes.device
    out = torch.zeros(n, 1, size, size, device=device)
    if n == 0 or t < 2:
        return out
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    px = centres.repeat(size).view(1, 1, -1)  # (1, 1, P): x of each pixel centre, row-major
    py = centres.repeat_interleave(size).view(1, 1, -1)  # (1, 1, P): y
    chunk = max(1, _CHUNK_ELEMENTS // ((t - 1) * size * size))
    for lo in range(0, n, chunk):
        part = strokes[lo : lo + chunk]
        drawn = drawn_segments(part)  # (B, T-1)
        # segments after the chunk's last drawn one never ink: cut them (a host sync, fine outside training)
        last = int(drawn.any(0).nonzero().max()) + 1 if bool(drawn.any()) else 0
        if last == 0:
            continue
        pts = points(part)[:, : last + 1]  # (B, S+1, 2)
        ax, ay = pts[:, :-1, 0, None], pts[:, :-1, 1, None]  # (B, S, 1) segment starts
        abx, aby = pts[:, 1:, 0, None] - ax, pts[:, 1:, 1, None] - ay  # (B, S, 1) segment vectors
        apx, apy = px - ax, py - ay  # (B, S, P)
        along = ((apx * abx + apy * aby) / (abx * abx + aby * aby).clamp(min=1e-12)).clamp(0, 1)  # 0 for a dot
        gx, gy = apx - along * abx, apy - along * aby
        dist2 = (gx * gx + gy * gy).masked_fill(~drawn[:, :last, None], float("inf"))  # (B, S, P)
        nearest = dist2.amin(1).sqrt()  # (B, P)
        out[lo : lo + chunk] = (width / 2 + 0.5 - nearest).clamp(0, 1).view(-1, 1, size, size)
    return out


# ---------------------------------------------------------------- MNIST: threshold, thin, trace, simplify


def _zhang_suen_tables() -> torch.Tensor:
    """(2, 256) bool: may the centre pixel be removed in sub-iteration 0 / 1, for each 8-bit neighbourhood
    code (bit k = neighbour k of P2..P9, clockwise from north)."""
    table = torch.zeros(2, 256, dtype=torch.bool)
    for code in range(256):
        p = [(code >> k) & 1 for k in range(8)]  # P2 (N), P3 (NE), P4 (E), P5 (SE), P6 (S), P7 (SW), P8 (W), P9
        count = sum(p)
        transitions = sum(1 for k in range(8) if p[k] == 0 and p[(k + 1) % 8] == 1)
        base = 2 <= count <= 6 and transitions == 1
        n, e, s_, w = p[0], p[2], p[4], p[6]
        table[0, code] = base and n * e * s_ == 0 and e * s_ * w == 0
        table[1, code] = base and n * e * w == 0 and n * s_ * w == 0
    return table


_ZS_TABLES = _zhang_suen_tables()


def skeletonize(x: torch.Tensor, threshold: int = THRESHOLD) -> torch.Tensor:
    """Zhang-Suen thinning (Zhang & Suen, 1984), vectorized over the whole batch: uint8 (N,1,H,W) -> bool
    (N,H,W), one-pixel-wide 8-connected centre lines of the pixels >= `threshold`.

    Threshold 128 = half ink: MNIST's digits are anti-aliased, so 128 is where the pen's edge passes and the
    mask keeps each stroke's full 2-4 px width (the thinning then finds its centre). On the frozen evaluator
    (10k test digits, eps 1, WIDTH 2) 128 gives 97.2 %, 160 97.4 %, 192 97.0 %: a flat optimum.
    Each sub-iteration looks its pixels' 8-bit neighbourhood codes up in a 256-entry table; both are repeated
    until no image changes (~10 rounds for MNIST)."""
    img = (x[:, 0] >= threshold) if x.ndim == 4 else (x >= threshold)  # (N, H, W)
    img = img.contiguous().clone()
    h, w = img.shape[-2:]
    shifts = ((0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0))  # P2..P9 as (row, col) offsets
    active = torch.arange(len(img))  # images still changing: thin digits finish early, blobs go on
    while len(active):
        part = img[active]  # (A, H, W)
        changed = torch.zeros(len(active), dtype=torch.bool)
        for step in (0, 1):
            p = torch.nn.functional.pad(part, (1, 1, 1, 1)).to(torch.uint8)  # (A, H+2, W+2)
            code = torch.zeros_like(part, dtype=torch.uint8)
            for k, (dr, dc) in enumerate(shifts):
                code |= p[:, dr : dr + h, dc : dc + w] << k
            remove = part & _ZS_TABLES[step][code.long()]
            part &= ~remove
            changed |= remove.flatten(1).any(1)
        img[active] = part
        active = active[changed]
    return img


_STEPS = ((-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1))  # 4-neighbours first


def trace(skeleton) -> list:
    """A skeleton (H, W) bool (tensor or array) -> polylines, each a float (P, 2) array of (x, y) pixel centres.

    Deterministic: starts are the endpoints (one ink neighbour) in row-major order, then any pixel left (loops)
    in row-major order. A walk steps to an unvisited 8-neighbour, 4-neighbours first (so a staircase's corner
    pixels are visited, not cut), until stuck; it then closes onto an already visited neighbour that is not
    among its own last three points (closing a loop, or joining a junction). A walk that starts next to an
    already visited pixel begins at that pixel, so a branch is attached to its junction. Walks that add a
    single new pixel (isolated pixels and one-pixel spurs of the thinning) are DROPPED: they are noise, and
    the strokes drawn next to them cover them anyway."""
    sk = np.asarray(skeleton.cpu() if isinstance(skeleton, torch.Tensor) else skeleton, dtype=bool)
    rows, cols = np.nonzero(sk)
    ink = set(zip(rows.tolist(), cols.tolist()))
    if not ink:
        return []
    pixels = list(zip(rows.tolist(), cols.tolist()))  # row-major (np.nonzero)
    ends = [(r, c) for r, c in pixels if sum((r + dr, c + dc) in ink for dr, dc in _STEPS) == 1]
    order = ends + pixels
    visited: set = set()
    polylines = []
    for start in order:
        if start in visited:
            continue
        path = []
        r, c = start
        for dr, dc in _STEPS:  # attach a branch to the stroke it leaves
            q = (r + dr, c + dc)
            if q in visited:
                path.append(q)
                break
        new = 0
        current = start
        while current is not None:
            path.append(current)
            visited.add(current)
            new += 1
            r, c = current
            current = None
            for dr, dc in _STEPS:
                q = (r + dr, c + dc)
                if q in ink and q not in visited:
                    current = q
                    break
        recent = set(path[-3:])
        r, c = path[-1]
        for dr, dc in _STEPS:  # close a loop / join a junction
            q = (r + dr, c + dc)
            if q in visited and q not in recent:
                path.append(q)
                break
        if new >= 2:
            polylines.append(np.array([(cc + 0.5, rr + 0.5) for rr, cc in path], dtype=np.float64))
    return polylines


def simplify(polyline: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: keep the fewest points such that every dropped point lies within `epsilon` px
    of the simplified line. (P, 2) -> (Q, 2), the ends always kept (a closed loop keeps its far point too)."""
    pts = np.asarray(polyline, dtype=np.float64)
    if len(pts) <= 2 or epsilon <= 0:
        return pts.copy()
    keep = np.zeros(len(pts), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        a, b = pts[lo], pts[hi]
        inner = pts[lo + 1 : hi]
        ab = b - a
        norm = np.hypot(ab[0], ab[1])
        if norm < 1e-12:  # a closed loop: distance to the shared end point
            dist = np.hypot(inner[:, 0] - a[0], inner[:, 1] - a[1])
        else:
            dist = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / norm
        k = int(np.argmax(dist))
        if dist[k] > epsilon:
            mid = lo + 1 + k
            keep[mid] = True
            stack.append((lo, mid))
            stack.append((mid, hi))
    return pts[keep]


def to_stroke5(polylines: list, max_len: int) -> torch.Tensor | None:
    """Polylines of absolute (x, y) points -> one (max_len, 5) float32 stroke-5 sequence (see the module
    docstring), or None when the points do not fit (more than max_len - 1: one end row is always kept)."""
    polylines = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polylines if len(p)]
    total = sum(len(p) for p in polylines)
    if total > max_len - 1:
        return None
    out = torch.zeros(max_len, 5, dtype=torch.float32)
    out[:, 4] = 1
    if total == 0:
        return out
    pts = np.concatenate(polylines)  # (L, 2)
    offsets = np.diff(pts, axis=0, prepend=np.array([[CENTRE, CENTRE]]))
    pen_up = np.zeros(total, dtype=bool)
    pen_up[np.cumsum([len(p) for p in polylines]) - 1] = True  # each polyline's last point
    out[:total, :2] = torch.from_numpy(offsets).float()
    out[:total, 2] = torch.from_numpy(~pen_up).float()
    out[:total, 3] = torch.from_numpy(pen_up).float()
    out[:total, 4] = 0
    return out


def _empty_set(max_len: int) -> dict[str, torch.Tensor]:
    return {
        "strokes": torch.zeros(0, max_len, 5),
        "length": torch.zeros(0, dtype=torch.int64),
        "y": torch.zeros(0, dtype=torch.int64),
        "digit": torch.zeros(0, dtype=torch.int64),
    }


def _stack(rows: list, labels: list, digits: list, max_len: int) -> dict[str, torch.Tensor]:
    if not rows:
        return _empty_set(max_len)
    strokes = torch.stack(rows)  # (N, max_len, 5)
    return {
        "strokes": strokes,
        "length": (strokes[..., 4] == 0).sum(1).long(),
        "y": torch.tensor(labels, dtype=torch.int64),
        "digit": torch.tensor(digits, dtype=torch.int64),
    }


def quickdraw_to_set(
    sketches: list[np.ndarray],
    label: int,
    max_len: int = MAX_LEN,
    per_category: int | None = None,
    epsilon: float = 0.0,
    stats: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Stroke-3 sketches (dx, dy, pen_lift) -> a stroke set (module docstring) with y = label, digit = -1.

    Each sketch is scaled so its bounding box's longer side is QUICKDRAW_BOX px and centred by its bounding
    box on the canvas; then each stroke is simplified with RDP(`epsilon` px; 0 keeps every point). Sketches in
    file order; those needing more than max_len - 1 points are dropped; the first `per_category` that fit are
    kept (all when None). `stats`, if given, gets "dropped" (too long, among those looked at)."""
    rows: list[torch.Tensor] = []
    dropped = 0
    for sketch in sketches:
        if per_category is not None and len(rows) >= per_category:
            break
        s = np.asarray(sketch, dtype=np.float64).reshape(-1, 3)
        if len(s) == 0:
            dropped += 1
            continue
        pos = np.cumsum(s[:, :2], axis=0)  # (P, 2) absolute, the sketch's own units
        lo, hi = pos.min(0), pos.max(0)
        scale = QUICKDRAW_BOX / max(float((hi - lo).max()), 1e-9)
        pos = (pos - (lo + hi) / 2) * scale + CENTRE
        ends = np.flatnonzero(s[:, 2] > 0)
        cuts = list(ends + 1)
        if not cuts or cuts[-1] != len(s):
            cuts.append(len(s))  # the last stroke ends the sketch even without its pen_lift
        lines, start = [], 0
        for stop in cuts:
            if stop > start:
                lines.append(simplify(pos[start:stop], epsilon))
            start = stop
        seq = to_stroke5(lines, max_len)
        if seq is None:
            dropped += 1
        else:
            rows.append(seq)
    if stats is not None:
        stats["dropped"] = stats.get("dropped", 0) + dropped
    return _stack(rows, [label] * len(rows), [-1] * len(rows), max_len)



def build_mnist_strokes(
    split_dict: dict[str, torch.Tensor],
    max_len: int = MAX_LEN,
    epsilon: float = EPSILON,
    threshold: int = THRESHOLD,
) -> dict[str, torch.Tensor]:
    """{"x": uint8 (N,1,28,28), "y"} -> a stroke set (module docstring): threshold, thin, trace, simplify
    each polyline with RDP(`epsilon` px), in image order. Digits needing more than max_len - 1 points (or
    with no stroke at all) are dropped: the count is len(split_dict["y"]) - len(result["y"])."""
    x, y = split_dict["x"].cpu(), split_dict["y"].cpu().long()
    rows, labels = [], []
    for lo in range(0, len(x), 4096):
        skeletons = skeletonize(x[lo : lo + 4096], threshold).numpy()
        for k, sk in enumerate(skeletons):
            lines = [simplify(p, epsilon) for p in trace(sk)]
            seq = to_stroke5(lines, max_len) if lines else None
            if seq is not None:
                rows.append(seq)
                labels.append(int(y[lo + k]))
    return _stack(rows, labels, labels, max_len)


# ---------------------------------------------------------------- files: make_strokes, load_strokes, preview


def make_strokes(
    source: str,
    categories: list[str],
    per_category: int,
    max_len: int,
    epsilon: float,
    processed_dir: Path,
    out_dir: Path,
    raw_dir: Path,
    mirrors: list[Path],
    checksums: Path,
    classes: list[str] | None = None,
) -> dict:
    """Build the stroke set and write out_dir/{train,val,test}.pt (atomically, byte-identical on reruns) and
    out_dir/meta.json; return the meta dict.

    source "mnist": every image of the base splits in processed_dir, traced (categories and per_category are
    not used); `classes` are the base data set's class names (default: the digits 0-9), recorded in meta.json.
    Any grey data set traces: on Fashion-MNIST the skeletons of filled garments are their medial lines. source "quickdraw": the categories' sketch-rnn files (fetch_quickdraw into raw_dir), label =
    index in `categories`, the first per_category sketches of each split that fit."""
    if source not in ("mnist", "quickdraw"):
        raise DataError(f"unknown stroke source {source!r}; choose 'mnist' or 'quickdraw'.")
    if max_len < 2:
        raise DataError(f"max_len must be at least 2 (one point and one end row), got {max_len}.")
    out_dir = Path(out_dir)
    meta: dict = {"source": source, "max_len": max_len, "epsilon": epsilon, "counts": {}, "dropped": {},
                  "max_points": {}, "mean_points": {}, "sha256": {}}
    if source == "mnist":
        base = {split: load_split(Path(processed_dir), split) for split in SPLITS}
        sets = {split: build_mnist_strokes(base[split], max_len, epsilon) for split in SPLITS}
        dropped = {split: len(base[split]["y"]) - len(sets[split]["y"]) for split in SPLITS}
        meta["classes"] = list(classes) if classes is not None else [str(d) for d in range(10)]
    else:
        if not categories:
            raise DataError("source 'quickdraw' needs at least one category (strokes.categories).")
        from genzoo.data.quickdraw import fetch_quickdraw, read_quickdraw

        files = fetch_quickdraw(categories, Path(raw_dir), list(mirrors), Path(checksums))
        parts: dict[str, list] = {split: [] for split in SPLITS}
        dropped = {split: 0 for split in SPLITS}
        for label, category in enumerate(categories):
            raw = read_quickdraw(files[category])
            for split in SPLITS:
                stats: dict = {}
                parts[split].append(quickdraw_to_set(raw[split], label, max_len, per_category, epsilon, stats))
                dropped[split] += stats.get("dropped", 0)
        sets = {split: {k: torch.cat([p[k] for p in parts[split]]) for k in parts[split][0]} for split in SPLITS}
        meta["classes"] = list(categories)
        meta["per_category"] = per_category
    for split in SPLITS:
        data = sets[split]
        _check(data, f"make_strokes({source!r}, split={split!r})")
        path = save_torch(data, Path(out_dir) / f"{split}.pt")
        meta["sha256"][split] = hashlib.sha256(path.read_bytes()).hexdigest()
        meta["counts"][split] = len(data["y"])
        meta["dropped"][split] = dropped[split]
        lengths = data["length"].float()
        meta["max_points"][split] = int(lengths.max()) if len(lengths) else 0
        meta["mean_points"][split] = round(float(lengths.mean()), 3) if len(lengths) else 0.0
    meta["choices"] = {
        "canvas": "28x28 px, x right, y down, pixel (r, c) centred at (c + 0.5, r + 0.5); pen starts at (14, 14)",
        "mnist_threshold": THRESHOLD,
        "thinning": "Zhang-Suen",
        "trace": "from endpoints in row-major order, 4-neighbours first; one-new-pixel walks dropped",
        "rdp_epsilon_px": epsilon,
        "quickdraw_box_px": QUICKDRAW_BOX,
        "raster_width_px": WIDTH,
    }
    write_json(out_dir / "meta.json", meta)
    return meta


def _check(data: object, where: str) -> None:
    """Raise DataError unless `data` is a stroke set of the module docstring's keys, dtypes and shapes."""
    require_tensors(data, ("strokes", "length", "y", "digit"), where, _HINT)
    s = data["strokes"]
    if s.dtype != torch.float32 or s.ndim != 3 or s.shape[2] != 5 or s.shape[1] < 2:
        raise DataError(f"{where}: unexpected strokes {s.dtype} {tuple(s.shape)} (want float32 (N, T, 5)); {_HINT}.")
    for key in ("length", "y", "digit"):
        t = data[key]
        if t.dtype != torch.int64 or t.shape != (len(s),):
            raise DataError(f"{where}: unexpected {key} {t.dtype} {tuple(t.shape)} (N = {len(s)}); {_HINT}.")
    if len(s) and not bool(((data["length"] >= 0) & (data["length"] < s.shape[1])).all()):
        raise DataError(f"{where}: a length outside [0, max_len - 1]; {_HINT}.")


def load_strokes(folder: Path, split: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """One split of the stroke set (module docstring), validated, on `device`."""
    return read_split_file(folder, split, _HINT, device, _check)


def preview(folder: Path, n: int = 64) -> dict[str, tuple[torch.Tensor, int]]:
    """{"strokes": ((n,1,28,28) floats in [0,1], 8)}: the first n train sketches, rasterized, for the report."""
    data = load_strokes(folder, "train")
    return {"strokes": (rasterize(data["strokes"][:n]), 8)}
