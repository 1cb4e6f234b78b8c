"""Image grids for the report, MLflow and `dvc plots show`."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from genzoo.engine.io import write_bytes


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10) -> Path:
    """(N, C, H, W) floats in [0, 1] -> one PNG, written atomically."""
    from torchvision.utils import save_image  # imports all of torchvision (~2 s): only when drawing

    buffer = io.BytesIO()
    save_image(images.detach().float().clamp(0, 1).cpu(), buffer, nrow=nrow, padding=2, pad_value=0.5, format="png")
    return write_bytes(path, buffer.getvalue())


def save_pictures(grids: dict[str, tuple[torch.Tensor, int]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # a picture the new run does not make (e.g. the 2-D manifold) must go
        if stale.stem not in grids:
            stale.unlink()
    return [save_grid(images, folder / f"{name}.png", nrow) for name, (images, nrow) in grids.items()]


def figure_to_image(fig) -> torch.Tensor:
    """A matplotlib figure -> (1, 3, H, W) floats in [0, 1], so a plot (e.g. a 2-D code scatter) can be one of
    a model's `pictures` (shown with nrow=1). The figure is closed."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def paired_groups(n: int) -> tuple[int, int]:
    """(groups, per_row) for a picture of paired rows drawn from n examples: up to three groups of rows of 10."""
    return max(1, min(3, n // 10)), min(10, n)


def interleave_rows(rows: list[torch.Tensor], per_row: int) -> torch.Tensor:
    """Rows that belong together stacked group by group: input, output, truth of the first `per_row` examples,
    then of the next, ... Each of `rows` is (groups * per_row, C, H, W); the result is one grid's images."""
    groups = len(rows[0]) // per_row
    return torch.stack([r.view(groups, per_row, *r.shape[1:]) for r in rows], 1).flatten(0, 2)
