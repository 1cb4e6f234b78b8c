"""Stroke data for Sketch-RNN (genzoo.data.strokes): rasterize (pen states, end rows, anti-aliasing), Zhang-Suen
skeletons, tracing of hand-made shapes, RDP, the stroke-5 format's invariants, determinism, MNIST round trip,
QuickDraw conversion, files and their validation. (Fetching and reading QuickDraw: tests/test_quickdraw.py.)
All inputs are built here (no data/processed, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import quickdraw_npz
from tiny_data import font_digits

from genzoo.data import quickdraw as Q
from genzoo.data import strokes as S
from genzoo.engine.errors import DataError
from genzoo.engine.io import save_torch

torch.set_num_threads(1)


def _rows(*rows) -> torch.Tensor:
    """(1, T, 5) from (dx, dy, pen) rows, pen in {0 down, 1 up, 2 end}."""
    out = torch.zeros(1, len(rows), 5)
    for i, (dx, dy, pen) in enumerate(rows):
        out[0, i, :2] = torch.tensor([dx, dy], dtype=torch.float32)
        out[0, i, 2 + pen] = 1
    return out


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    return font_digits(30)


# ---------------------------------------------------------------- rasterize


def test_rasterize_draws_pen_down_segment_only():
    # point 0 at (8, 8); pen down to point 1 at (20, 8); pen up; point 2 at (20, 20); end
    down = S.rasterize(_rows((-6, -6, 0), (12, 0, 1), (0, 12, 1), (0, 0, 2)), width=1.0)[0, 0]
    assert down.shape == (28, 28) and 0 <= down.min() and down.max() <= 1
    assert down[7:9, 10:18].min() > 0.4  # the line y = 8 lights rows 7 and 8 (centres 7.5, 8.5)
    assert down[10:, :].sum() == 0  # the pen-up move from (20, 8) to (20, 20) is not drawn
    up = S.rasterize(_rows((-6, -6, 1), (12, 0, 1), (0, 0, 2)), width=1.0)
    assert up.sum() == 0  # pen up after point 0: nothing drawn


def test_rasterize_stops_at_first_end_row_and_uses_argmax():
    seq = _rows((-6, -6, 0), (12, 0, 2), (0, 12, 0), (0, 0, 0), (0, 0, 2))  # end after point 0
    assert S.rasterize(seq).sum() == 0  # the segment into an end row and all after it are not drawn
    soft = torch.tensor([[[-6.0, -6, 0.5, 0.3, 0.2], [12, 0, 0.2, 0.7, 0.1], [0, 0, 0.1, 0.1, 0.8]]])
    hard = _rows((-6, -6, 0), (12, 0, 1), (0, 0, 2))
    assert torch.equal(S.rasterize(soft), S.rasterize(hard))  # a model's soft pen states: the argmax


def test_rasterize_width_and_chunks(monkeypatch):
    seq = _rows((-6, 0, 0), (12, 0, 1), (0, 0, 2))  # horizontal line y = 14 from x = 8 to 20
    thin, thick = S.rasterize(seq, width=1.0), S.rasterize(seq, width=3.0)
    assert (thick > 0.5).sum() > (thin > 0.5).sum() and (thin <= thick).all()
    batch = torch.cat([seq, _rows((0, -6, 0), (0, 12, 1), (0, 0, 2))] * 5)
    whole = S.rasterize(batch)
    monkeypatch.setattr(S, "_CHUNK_ELEMENTS", 1)  # one sketch per chunk
    assert torch.equal(S.rasterize(batch), whole)


# ---------------------------------------------------------------- skeleton, trace, simplify


def test_skeletonize_thins_a_bar_and_is_batch_independent():
    x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    x[0, 0, 5:23, 12:15] = 255  # 3 px wide vertical bar
    x[1, 0, 10:13, 4:24] = 200  # 3 px wide horizontal bar, grey but above the threshold
    sk = S.skeletonize(x)
    assert sk.dtype == torch.bool and sk.shape == (2, 28, 28)
    assert (sk[0].sum(1) <= 1).all() and sk[0].sum() >= 14  # one pixel per row, most of the length
    assert (sk[1].sum(0) <= 1).all() and sk[1].sum() >= 16
    assert torch.equal(S.skeletonize(x[1:]), sk[1:])  # vectorized: images do not interact
    assert not S.skeletonize(x // 4).any()  # faint ink (50-63 < threshold) is background


def _canvas(*pixels) -> np.ndarray:
    sk = np.zeros((28, 28), dtype=bool)
    for r, c in pixels:
        sk[r, c] = True
    return sk


def test_trace_L_box_T_and_isolated_pixel():
    ell = _canvas(*[(r, 5) for r in range(5, 15)], *[(14, c) for c in range(6, 13)])
    lines = S.trace(ell)
    assert len(lines) == 1 and len(lines[0]) == 17  # every pixel once
    assert [p.tolist() for p in S.simplify(lines[0], 0.5)] == [[5.5, 5.5], [5.5, 14.5], [12.5, 14.5]]

    box = _canvas(*[(5, c) for c in range(5, 15)], *[(14, c) for c in range(5, 15)],
                  *[(r, 5) for r in range(6, 14)], *[(r, 14) for r in range(6, 14)])
    lines = S.trace(box)
    assert len(lines) == 1 and len(lines[0]) == 37  # 36 pixels, closed back onto the start
    corners = S.simplify(lines[0], 0.5)
    assert len(corners) == 5 and np.array_equal(corners[0], corners[-1])

    tee = _canvas(*[(5, c) for c in range(5, 16)], *[(r, 10) for r in range(6, 15)], (20, 20))
    lines = S.trace(tee)  # the bar, then the stem attached to its junction; the isolated pixel dropped
    assert len(lines) == 2
    assert [len(S.simplify(p, 0.5)) for p in lines] == [2, 2]
    assert S.simplify(lines[1], 0.5).tolist() == [[10.5, 14.5], [10.5, 5.5]]
    assert sum(len(p) for p in lines) == 11 + 9 + 1  # every skeleton pixel but the isolated one (+ junction)


def test_simplify_line_keeps_ends_and_zigzag_keeps_corners():
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0)], 1)
    assert S.simplify(line, 0.1).tolist() == [[0, 0], [9, 18]]
    zig = np.array([[0, 0], [1, 3], [2, 0], [3, 3], [4, 0]], dtype=float)
    assert len(S.simplify(zig, 0.5)) == 5 and len(S.simplify(zig, 5.0)) == 2


# ---------------------------------------------------------------- stroke-5


def _check_format(data: dict, max_len: int) -> None:
    s, length = data["strokes"], data["length"]
    assert s.dtype == torch.float32 and s.shape[1:] == (max_len, 5)
    assert length.dtype == data["y"].dtype == data["digit"].dtype == torch.int64
    assert (length >= 1).all() and (length <= max_len - 1).all()  # at least one end row
    t = torch.arange(max_len)
    real = t[None] < length[:, None]  # (N, T)
    end = torch.tensor([0.0, 0, 0, 0, 1])
    assert (s[~real] == end).all()  # end rows exact
    assert ((s[real][:, 2:].sum(1) == 1) & (s[real][:, 4] == 0)).all()  # one-hot p1/p2
    last = s[torch.arange(len(s)), length - 1]
    assert (last[:, 3] == 1).all()  # the last real point lifts the pen


def test_to_stroke5_positions_and_pens():
    lines = [np.array([[4.5, 4.5], [10.5, 4.5]]), np.array([[20.5, 20.5], [20.5, 24.5], [22.5, 24.5]])]
    seq = S.to_stroke5(lines, 8)
    assert seq.shape == (8, 5)
    assert torch.allclose(S.points(seq[None])[0, :5], torch.tensor(np.concatenate(lines)).float())
    assert seq[:, 2].tolist() == [1, 0, 1, 1, 0, 0, 0, 0] and seq[:, 3].tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    assert S.to_stroke5(lines, 6) is not None and S.to_stroke5(lines, 5) is None  # 5 points need 6 rows


def test_build_mnist_format_determinism_and_drop(digits):
    one = S.build_mnist_strokes(digits, max_len=64, epsilon=1.0)
    assert len(one["y"]) == 30 and torch.equal(one["digit"], one["y"])
    _check_format(one, 64)
    two = S.build_mnist_strokes(digits, max_len=64, epsilon=1.0)
    assert all(torch.equal(one[k], two[k]) for k in one)
    short = S.build_mnist_strokes(digits, max_len=6, epsilon=1.0)  # digits with > 5 points dropped
    assert 0 < len(short["y"]) < 30 and (short["length"] <= 5).all()
    _check_format(short, 6)
    fits = one["length"] <= 5
    assert torch.equal(short["strokes"], one["strokes"][fits][:, :6])  # exactly the short ones, in order
    assert torch.equal(short["y"], one["y"][fits])


def test_round_trip_covers_the_skeleton(digits):
    data = S.build_mnist_strokes(digits, max_len=64, epsilon=0.5)
    ink = S.rasterize(data["strokes"], width=1.0)[:, 0]  # (N, 28, 28)
    sk = S.skeletonize(digits["x"]).float()
    covered = (ink >= 0.5).float() * sk
    assert covered.sum() / sk.sum() >= 0.9
    near = F.max_pool2d(sk[:, None], 5, stride=1, padding=2)[:, 0]  # within 2 px of the skeleton
    assert (ink * (1 - near)).sum() / ink.sum() <= 0.02


# ---------------------------------------------------------------- QuickDraw


def test_read_and_convert_quickdraw(tmp_path):
    path = quickdraw_npz(tmp_path / "cat.npz", {"train": [5, 6, 40], "valid": [4], "test": [3, 3]})
    raw = Q.read_quickdraw(path)
    assert [len(raw[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    assert all(s.dtype == np.int16 and s.shape[1] == 3 for s in raw["train"])
    square = np.array([[0, 0, 0], [100, 0, 0], [0, 50, 0], [-100, 0, 1]], dtype=np.int16)  # 100 x 50 box
    stats: dict = {}
    data = S.quickdraw_to_set(raw["train"] + [square], label=3, max_len=20, stats=stats)
    assert stats["dropped"] == 1 and len(data["y"]) == 3  # the 40-point sketch does not fit
    assert (data["y"] == 3).all() and (data["digit"] == -1).all()
    _check_format(data, 20)
    pts = S.points(data["strokes"][-1:])[0, :4]
    assert torch.allclose(pts, torch.tensor([[4.0, 9], [24, 9], [24, 19], [4, 19]]))  # 20 px wide, centred
    assert len(S.quickdraw_to_set(raw["train"], 0, 64, per_category=2)["y"]) == 2


def _processed(folder: Path) -> None:
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        d = font_digits(n, seed=len(split))
        d["xb"] = (d["x"] >= 128).to(torch.uint8) * 255  # every split has its fixed binarization
        save_torch(d, folder / f"{split}.pt")


@pytest.mark.parametrize("source", ["mnist", "quickdraw"])
def test_make_strokes_files_are_reproducible_and_valid(tmp_path, offline, source):
    processed, mirror = tmp_path / "processed", tmp_path / "mirror"
    _processed(processed)
    for i, name in enumerate(("cat", "dog")):
        quickdraw_npz(mirror / "quickdraw" / f"{name}.npz", {"train": [5, 6, 7, 80], "valid": [4, 5], "test": [4]}, i)
    kwargs = dict(source=source, categories=["cat", "dog"], per_category=3, max_len=32, epsilon=1.0,
                  processed_dir=processed, raw_dir=tmp_path / "raw", mirrors=[mirror], checksums=tmp_path / "s.json")
    meta = S.make_strokes(out_dir=tmp_path / "a", **kwargs)
    S.make_strokes(out_dir=tmp_path / "b", **kwargs)
    for split in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{split}.pt").read_bytes() == (tmp_path / "b" / f"{split}.pt").read_bytes()
        data = S.load_strokes(tmp_path / "a", split)
        _check_format(data, 32)
        assert meta["counts"][split] == len(data["y"])
    assert json.loads((tmp_path / "a" / "meta.json").read_text()) == meta
    if source == "mnist":  # traced from the base images: their data set's class names (the digits by default)
        assert meta["classes"] == [str(d) for d in range(10)]
        named = S.make_strokes(out_dir=tmp_path / "c", **kwargs, classes=["T-shirt/top", *"abcdefghi"])
        assert named["classes"][0] == "T-shirt/top" and named["sha256"] == meta["sha256"]
    if source == "quickdraw":
        assert meta["counts"] == {"train": 6, "val": 4, "test": 2} and meta["dropped"]["train"] == 0
        assert S.load_strokes(tmp_path / "a", "train")["y"].tolist() == [0, 0, 0, 1, 1, 1]
    else:
        assert meta["counts"] == {"train": 20, "val": 10, "test": 10}
    images, nrow = S.preview(tmp_path / "a")["strokes"]
    assert images.shape == (meta["counts"]["train"], 1, 28, 28) and nrow == 8


def test_load_strokes_refusals(tmp_path):
    with pytest.raises(DataError, match="dvc repro strokes"):
        S.load_strokes(tmp_path, "train")
    (tmp_path / "train.pt").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="unreadable"):
        S.load_strokes(tmp_path, "train")
    good = S.to_stroke5([np.array([[1.0, 1], [2, 2]])], 4)[None]
    base = {"strokes": good, "length": torch.tensor([2]), "y": torch.tensor([1]), "digit": torch.tensor([1])}
    for broken, why in (
        ({k: v for k, v in base.items() if k != "digit"}, "missing digit"),
        ({**base, "strokes": good.double()}, "unexpected strokes"),
        ({**base, "strokes": good[..., :3]}, "unexpected strokes"),
        ({**base, "y": torch.tensor([1, 2])}, "unexpected y"),
        ({**base, "length": torch.tensor([4])}, "length outside"),
    ):
        save_torch(broken, tmp_path / "train.pt")
        with pytest.raises(DataError, match=why):
            S.load_strokes(tmp_path, "train")
    save_torch(base, tmp_path / "train.pt")
    assert torch.equal(S.load_strokes(tmp_path, "train")["strokes"], good)
    with pytest.raises(DataError, match="unknown split"):
        S.load_strokes(tmp_path, "dev")


def test_filled_silhouettes_trace_too():
    """Fashion-MNIST's garments are filled shapes, not pen strokes: their skeletons (medial lines) still trace
    into short stroke sequences of the format, for almost every image."""
    from tiny_data import tiny_garments

    labels = torch.arange(40) % 10
    images = tiny_garments(labels, 28, torch.Generator().manual_seed(0))[:, None]
    data = S.build_mnist_strokes({"x": images, "y": labels}, max_len=32)
    _check_format(data, 32)
    assert len(data["y"]) >= 30 and (data["length"] >= 2).all()  # noisy edges leave some too long for 31
