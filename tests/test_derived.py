"""Derived data sets (issue 6): keys/shapes per set and split, determinism, disjoint unpaired halves, hidden
pairs, morphology order, edges on the boundary, area downsampling, multidomain label masks, synthetic digits,
and load_set's refusals. All inputs are built here (no data/processed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import font_digits

from genzoo.data import derived
from genzoo.data.loading import load_split
from genzoo.engine.errors import DataError
from genzoo.engine.io import save_torch

torch.set_num_threads(1)

_KEYS = {  # the interface in the lead's brief, spelled out (not read from the module)
    "paired": {"train": {"a", "b", "y"}, "val": {"a", "b", "y"}},
    "superres": {"train": {"a", "b", "y"}, "val": {"a", "b", "y"}},
    "unpaired": {"train": {"a", "b", "y_a", "y_b"}, "val": {"a", "b", "y"}},
    "multidomain": {"train": {"x", "y", "colour", "stroke", "set"}, "val": {"x", "y", "colour", "stroke", "set"}},
    "synthetic": {"train": {"a", "y_a", "b", "y"}, "val": {"a", "y_a", "b", "y"}},
}


@pytest.fixture(scope="module")
def base() -> dict[str, torch.Tensor]:
    return font_digits(41)


def _bar(width: int) -> torch.Tensor:
    """(1,1,28,28) uint8: a vertical bar `width` px wide, 16 px tall, full ink."""
    x = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    x[..., 6:22, 12 : 12 + width] = 255
    return x


@pytest.mark.parametrize("name", derived.SETS)
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_keys_shapes_dtypes(base, name, split):
    data = derived.build(name, base, seed=0, split=split)
    assert set(data) == _KEYS[name]["train" if split == "train" else "val"]
    n = 20 if (name == "unpaired" and split == "train") else 41  # odd N: one row dropped, halves equal
    for key, t in data.items():
        assert len(t) == n, key
        if key in ("a", "b", "x"):
            assert t.dtype == torch.uint8
            channels = 3 if name == "multidomain" else 1
            size = 7 if (name == "superres" and key == "a") else 28
            assert t.shape == (n, channels, size, size), key
        else:
            assert t.dtype == torch.int64 and t.shape == (n,), key


@pytest.mark.parametrize("name", derived.SETS)
def test_deterministic_and_seeded(base, name):
    one, two = (derived.build(name, base, seed=3, split="train") for _ in range(2))
    assert all(torch.equal(one[k], two[k]) for k in one)
    other = derived.build(name, base, seed=4, split="train")
    if name in ("unpaired", "multidomain", "synthetic"):  # the sets that draw anything
        assert any(not torch.equal(one[k], other[k]) for k in one)
    else:
        assert all(torch.equal(one[k], other[k]) for k in one)
    val = derived.build(name, base, seed=3, split="val")  # splits draw from their own streams
    if name in ("multidomain", "synthetic"):
        assert not torch.equal(val[next(iter(val))], one[next(iter(one))])


def test_unpaired_train_halves_are_disjoint():
    n = 23
    x = font_digits(n)["x"]
    ids = torch.arange(100, 100 + n)  # unique ids as labels: every row of a/b says which base row it came from
    data = derived.build("unpaired", {"x": x, "y": ids}, seed=0, split="train")
    assert len(data["y_a"]) == len(data["y_b"]) == n // 2
    assert not set(data["y_a"].tolist()) & set(data["y_b"].tolist())
    assert len(set(data["y_a"].tolist()) | set(data["y_b"].tolist())) == 2 * (n // 2)
    assert torch.equal(data["a"], derived.thin(x[data["y_a"] - 100]))
    assert torch.equal(data["b"], derived.thick(x[data["y_b"] - 100]))


@pytest.mark.parametrize("split", ["val", "test"])
def test_unpaired_hidden_pair_is_the_same_digit(base, split):
    data = derived.build("unpaired", base, seed=0, split=split)
    assert torch.equal(data["y"], base["y"])
    assert torch.equal(data["a"], derived.thin(base["x"]))
    assert torch.equal(data["b"], derived.thick(base["x"]))


def test_stroke_order_and_thin_strokes_stay_visible(base):
    x = base["x"]

    def lit(t):
        return (t > 127).sum((1, 2, 3))

    assert (lit(derived.thin(x)) < lit(x)).all() and (lit(x) < lit(derived.thick(x))).all()
    assert (lit(derived.thin(x)) > 0).all()  # no digit erodes away
    bar = _bar(4)
    assert lit(derived.thin(bar)).item() == 15 * 3  # 2x2 erosion: 1 px off the width and the length
    assert lit(derived.thick(bar)).item() == 16 * 6 + 2 * 4  # 1 px on each side and each end
    assert derived.thin(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).sum() == 0


def test_edges_lie_on_the_digit_boundary(base):
    x = base["x"]
    e = derived.edges(x)
    assert set(e.unique().tolist()) <= {0, 255}
    near = torch.nn.functional.max_pool2d((x > 0).float(), 3, 1, 1) > 0  # the digit grown by one pixel
    assert not ((e > 0) & ~near).any()
    assert ((e > 0).sum((1, 2, 3)) > 0).all()
    assert derived.edges(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).sum() == 0
    square = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    square[..., 8:20, 8:20] = 255
    es = derived.edges(square)[0, 0] > 0
    assert es[8, 14] and es[7, 14] and not es[14, 14]  # outline lit, interior dark
    paired = derived.build("paired", base, seed=0, split="test")
    assert torch.equal(paired["a"], e) and torch.equal(paired["b"], x)


def test_superres_area_downsampling_and_bicubic_baseline(base):
    const = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    assert (derived.downsample(const) == 77).all()
    blocks = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    blocks[..., :4, :4] = torch.tensor([[0, 10, 20, 30]] * 4, dtype=torch.uint8)  # mean 15
    assert derived.downsample(blocks)[0, 0, 0, 0] == 15 and derived.downsample(blocks)[0, 0, 0, 1] == 0
    data = derived.build("superres", base, seed=0, split="train")
    up = derived.bicubic_upsample(data["a"])
    assert up.shape == (41, 1, 28, 28) and up.dtype == torch.float32
    assert up.min() >= 0 and up.max() <= 1
    assert torch.allclose(derived.bicubic_upsample(derived.downsample(const)), torch.full((2, 1, 28, 28), 77 / 255))
    # the baseline is a real baseline: much closer to the truth (MSE) than a blank image, and than nearest
    truth = data["b"].float() / 255
    nearest = torch.nn.functional.interpolate(data["a"].float() / 255, scale_factor=4, mode="nearest")
    mse = (up - truth).pow(2).mean()
    assert mse < 0.5 * truth.pow(2).mean() and mse < (nearest - truth).pow(2).mean()


def test_multidomain_masks_and_colours():
    data_in = font_digits(60, seed=1)
    train = derived.build("multidomain", data_in, seed=0, split="train")
    s, colour, kind = train["set"], train["colour"], train["stroke"]
    assert set(s.tolist()) == {0, 1} and (s == 0).sum() == (s == 1).sum() == 30
    assert ((colour >= 0) == (s == 0)).all() and ((kind >= 0) == (s == 1)).all()
    assert (colour[s == 1] == -1).all() and (kind[s == 0] == -1).all()
    assert set(colour[s == 0].tolist()) == {0, 1, 2} and set(kind[s == 1].tolist()) == {0, 1, 2}
    lit_channels = (train["x"].flatten(2) > 0).any(2)  # (N, 3)
    assert (lit_channels.sum(1) == 1).all()
    assert torch.equal(lit_channels[s == 0].float().argmax(1), colour[s == 0])
    val = derived.build("multidomain", data_in, seed=0, split="val")
    assert (val["set"] == -1).all() and (val["colour"] >= 0).all() and (val["stroke"] >= 0).all()
    for i in range(len(val["y"])):  # channel `colour` holds stroke(x), the others are black
        c, k = val["colour"][i].item(), val["stroke"][i].item()
        expected = {0: derived.thin, 1: lambda t: t, 2: derived.thick}[k](data_in["x"][i : i + 1])[0, 0]
        assert torch.equal(val["x"][i, c], expected)
        assert val["x"][i, [j for j in range(3) if j != c]].sum() == 0


def test_synthetic_balanced_nonempty_centred_like_mnist():
    real = font_digits(200, seed=5)
    data = derived.build("synthetic", {"x": real["x"], "y": real["y"]}, seed=0, split="train")
    counts = torch.bincount(data["y_a"], minlength=10)
    assert counts.min() == counts.max() == 20
    assert torch.equal(data["b"], real["x"]) and torch.equal(data["y"], real["y"])
    a = data["a"].float().squeeze(1) / 255  # (N, 28, 28)
    mass = a.sum((1, 2))
    assert (mass > 20).all()  # no empty glyph
    grid = torch.arange(28.0)
    cy = (a.sum(2) * grid).sum(1) / mass
    cx = (a.sum(1) * grid).sum(1) / mass
    assert ((cy - 14).abs() < 1.6).all() and ((cx - 14).abs() < 1.6).all()  # mass centre at pixel 14 (+-jitter)
    rows = (a > 0.3).any(2)
    height = 28 - rows.float().argmax(1) - rows.flip(1).float().argmax(1)
    assert (height >= 15).all() and (height <= 23).all()  # the 20-px MNIST box, up to the scale jitter
    # the digits are recognisable: nearest class mean of a second draw gets them right
    other = derived.build("synthetic", {"x": real["x"], "y": real["y"]}, seed=1, split="train")
    means = torch.stack([a[data["y_a"] == d].mean(0).flatten() for d in range(10)])  # (10, 784)
    guess = torch.cdist(other["a"].float().flatten(1) / 255, means).argmin(1)
    assert (guess == other["y_a"]).float().mean() > 0.6


def _processed(folder: Path) -> Path:
    for split, n, seed in (("train", 30, 0), ("val", 12, 1), ("test", 12, 2)):
        data = font_digits(n, seed)
        data["xb"] = (data["x"] > 127).to(torch.uint8)  # every split has its fixed binarization
        save_torch(data, folder / f"{split}.pt")
    return folder


def test_derive_writes_identical_files_and_load_set_round_trips(tmp_path):
    processed = _processed(tmp_path / "processed")
    meta = derived.derive(processed, tmp_path / "one", seed=0)
    derived.derive(processed, tmp_path / "two", seed=0)
    for name in derived.SETS:
        for split in ("train", "val", "test"):
            one = (tmp_path / "one" / name / f"{split}.pt").read_bytes()
            assert one == (tmp_path / "two" / name / f"{split}.pt").read_bytes()
            loaded = derived.load_set(tmp_path / "one", name, split)
            rebuilt = derived.build(name, load_split(processed, split), 0, split)
            assert set(loaded) == set(rebuilt) and all(torch.equal(loaded[k], rebuilt[k]) for k in loaded)
            assert meta["sets"][name]["counts"][split] == len(next(iter(loaded.values())))
    assert meta["sets"]["unpaired"]["counts"]["train"] == 15
    assert (tmp_path / "one" / "meta.json").is_file()
    assert derived.derive(processed, tmp_path / "three", seed=1)["content_hash"] != meta["content_hash"]
    grids = derived.preview(tmp_path / "one")
    assert set(grids) == set(derived.SETS)
    for images, nrow in grids.values():
        assert images.ndim == 4 and images.shape[1] == 3 and nrow > 0
        assert images.min() >= 0 and images.max() <= 1 and len(images) % nrow == 0


def test_load_set_refuses_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match="dvc repro derive") as missing:
        derived.load_set(tmp_path, "paired", "train")
    assert "paired/train.pt" in str(missing.value)
    path = tmp_path / "paired" / "train.pt"
    path.parent.mkdir()
    path.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="unreadable.*dvc repro derive"):
        derived.load_set(tmp_path, "paired", "train")
    good = derived.build("paired", font_digits(4), seed=0, split="train")
    save_torch({k: v for k, v in good.items() if k != "a"}, path)
    with pytest.raises(DataError, match="missing a"):
        derived.load_set(tmp_path, "paired", "train")
    save_torch({**good, "a": good["a"].float()}, path)
    with pytest.raises(DataError, match="unexpected tensor a"):
        derived.load_set(tmp_path, "paired", "train")
    save_torch({**good, "y": good["y"][:3]}, path)
    with pytest.raises(DataError, match="unexpected tensor y"):
        derived.load_set(tmp_path, "paired", "train")
    save_torch(good, path)
    assert torch.equal(derived.load_set(tmp_path, "paired", "train")["a"], good["a"])
    with pytest.raises(DataError, match="unknown derived set"):
        derived.load_set(tmp_path, "edges", "train")


def test_a_data_set_of_clothes_gets_every_set_but_the_font_digits(tmp_path):
    """On classes that are not digits the synthetic set (digits rendered from fonts) is left out, with the reason
    in meta.json; every other set is made from the same images. MNIST's meta.json has no such key."""
    from tiny_data import FASHION_CLASSES

    from genzoo.data.naming import MNIST, Naming

    clothes = Naming("tiny-fashion", FASHION_CLASSES)
    why = derived.not_applicable("synthetic", clothes)
    assert "renders the digits 0-9 from fonts" in why and "tiny-fashion" in why and "T-shirt/top" in why
    assert all(derived.not_applicable(name, clothes) is None for name in (None, "paired", "superres", "unpaired",
                                                                        "multidomain", "captions", "strokes"))
    assert all(derived.not_applicable(name, MNIST) is None for name in (*derived.SETS, "captions"))

    processed = _processed(tmp_path / "processed")
    meta = derived.derive(processed, tmp_path / "clothes", seed=0, names=clothes)
    assert set(meta["sets"]) == {"paired", "superres", "unpaired", "multidomain", "captions"}
    assert meta["not_applicable"] == {"synthetic": why}
    assert not (tmp_path / "clothes" / "synthetic").exists()
    assert (tmp_path / "captions" / "train.pt").is_file()
    digits = derived.derive(processed, tmp_path / "digits", seed=0)
    assert "not_applicable" not in digits
    for name in ("paired", "multidomain"):  # the same images, the same bytes
        assert (tmp_path / "clothes" / name / "test.pt").read_bytes() == \
            (tmp_path / "digits" / name / "test.pt").read_bytes()
    grids = derived.preview(tmp_path / "clothes", sets=tuple(s for s in derived.SETS if s in meta["sets"]))
    assert set(grids) == {"paired", "superres", "unpaired", "multidomain"}
