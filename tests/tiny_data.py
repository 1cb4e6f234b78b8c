"""Test helper: a deterministic tiny IDX dataset in a mirror folder, so no test needs the real MNIST.

The images are learnable on purpose: class c is a bright bar, horizontal for c < 5 and vertical otherwise,
at one of five positions, with small jitter and mild noise, so a tiny CNN separates the classes in a few
steps and a VAE has real structure to model.

A second kind stands in for Fashion-MNIST (`write_tiny_mirror(..., kind="garments", classes=FASHION_CLASSES)`):
filled silhouettes (class c a filled rectangle of its own width and height) under Fashion-MNIST's class names,
in a CLASSES file beside SHA256SUMS. Built-in checksums are fixed, so a tiny set goes by a custom name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from genzoo.data.download import CLASSES_FILE, DATASETS, FILES
from genzoo.data.idx import idx_bytes, write_idx

N_CLASSES = 10
FASHION_CLASSES = DATASETS["fashion-mnist"].classes  # T-shirt/top, Trouser, ..., Ankle boot


def tiny_images(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, size, size): one jittered bar per image whose orientation and position encode the label."""
    n = len(labels)
    pos = ((labels % 5).float() + 0.5) * size / 5  # bar centre across its orientation
    centre = pos + torch.randint(-1, 2, (n,), generator=gen)  # +-1 pixel jitter
    length = size * (0.55 + 0.2 * torch.rand(n, generator=gen))  # 55-75 % of the side
    start = (size - length) * torch.rand(n, generator=gen)
    brightness = 180 + 75 * torch.rand(n, generator=gen)
    grid = torch.arange(size).float() + 0.5
    across = (grid[None, :] - centre[:, None]).abs() <= 1.0  # (N, size): 2 pixels thick
    along = (grid[None, :] >= start[:, None]) & (grid[None, :] <= (start + length)[:, None])  # (N, size)
    bar = across[:, :, None] & along[:, None, :]  # (N, rows, cols): a horizontal bar at row `centre`
    vertical = labels >= 5
    bar[vertical] = bar[vertical].transpose(1, 2)
    noise = 12 * torch.randn(n, size, size, generator=gen)
    images = bar.float() * brightness[:, None, None] + noise
    return images.round().clamp(0, 255).to(torch.uint8)


def tiny_garments(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, size, size): one filled, jittered silhouette per image, as Fashion-MNIST's garments are filled
    shapes rather than pen strokes: class c a rectangle 6 + 3 (c % 5) px wide and 10 (c < 5) or 18 px tall."""
    n = len(labels)
    width = 6 + 3 * (labels % 5).float() + torch.randint(-1, 2, (n,), generator=gen)
    height = torch.where(labels < 5, 10.0, 18.0) + torch.randint(-1, 2, (n,), generator=gen)
    cy = size / 2 + torch.randint(-2, 3, (n,), generator=gen)
    cx = size / 2 + torch.randint(-2, 3, (n,), generator=gen)
    brightness = 160 + 90 * torch.rand(n, generator=gen)
    grid = torch.arange(size).float() + 0.5
    rows = (grid[None, :] - cy[:, None]).abs() <= height[:, None] / 2  # (N, size)
    cols = (grid[None, :] - cx[:, None]).abs() <= width[:, None] / 2
    shape = rows[:, :, None] & cols[:, None, :]  # (N, rows, cols)
    noise = 12 * torch.randn(n, size, size, generator=gen)
    images = shape.float() * brightness[:, None, None] + noise
    return images.round().clamp(0, 255).to(torch.uint8)


KINDS = {"bars": tiny_images, "garments": tiny_garments}


def tiny_split(n: int, size: int, gen: torch.Generator, kind: str = "bars") -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced labels in a seeded order, and their images."""
    labels = (torch.arange(n) % N_CLASSES)[torch.randperm(n, generator=gen)].to(torch.uint8)
    return KINDS[kind](labels.long(), size, gen), labels


def write_tiny_mirror(
    root: Path, name: str = "tiny", n_train: int = 300, n_test: int = 100, size: int = 28, seed: int = 0,
    kind: str = "bars", classes: tuple[str, ...] | None = None,
) -> Path:
    """Write root/<name>/<file>.gz and root/<name>/SHA256SUMS (and root/<name>/CLASSES, one name per line, when
    `classes` are given); return root, the mirror folder."""
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = tiny_split(n_train, size, gen, kind)
    x_test, y_test = tiny_split(n_test, size, gen, kind)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for file, tensor in zip(FILES, (x_train, y_train, x_test, y_test), strict=True):
        write_idx(folder / f"{file}.gz", tensor)
        lines.append(f"{hashlib.sha256(idx_bytes(tensor)).hexdigest()}  {file}\n")
    (folder / "SHA256SUMS").write_text("".join(lines))
    if classes is not None:
        (folder / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes))
    return Path(root)


def write_tiny_fashion_mirror(root: Path, name: str = "tiny-fashion", **kwargs) -> Path:
    """The Fashion-MNIST stand-in: filled silhouettes under Fashion-MNIST's ten class names."""
    return write_tiny_mirror(root, name, kind="garments", classes=FASHION_CLASSES, **kwargs)


def font_digits(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Digit-like uint8 images (the synthetic set's font renders with jitter: real 2-4 px strokes), labels 0-9."""
    from genzoo.data.derived import render_synthetic

    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    return {"x": render_synthetic(y, gen), "y": y}
