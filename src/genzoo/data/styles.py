"""How a digit is drawn: stroke width (thin, regular, thick) and colour, the attributes of the multidomain set
(StarGAN), the unpaired set (CycleGAN) and StackGAN's captions. Shared by derived.py and captions.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOURS = ("red", "green", "blue")
STROKES = ("thin", "regular", "thick")


def _cross(x: torch.Tensor, reduce, outside: int) -> torch.Tensor:
    """reduce (torch.maximum/minimum) over each pixel and its 4 neighbours; `outside` beyond the border."""
    p = F.pad(x, (1, 1, 1, 1), value=outside)
    out = reduce(p[..., 1:-1, 1:-1], p[..., :-2, 1:-1])
    out = reduce(out, p[..., 2:, 1:-1])
    out = reduce(out, p[..., 1:-1, :-2])
    return reduce(out, p[..., 1:-1, 2:])


def thick(x: torch.Tensor) -> torch.Tensor:
    """Grey dilation with the cross kernel: strokes about 2 px wider. uint8 (N,C,H,W) -> same."""
    return _cross(x, torch.maximum, 0).contiguous()


def thin(x: torch.Tensor) -> torch.Tensor:
    """Grey erosion with the 2x2 square (min over the pixel and its right, lower and lower-right neighbours;
    outside counts as background): strokes 1 px narrower, shifted by half a pixel. Each image's contrast is
    then stretched back to the original's peak (erosion also dims the 2-3 px strokes): a thin pen, not a faint
    one. uint8 (N,C,H,W) -> same.

    Why 2x2 and not the cross of `thick`: MNIST strokes are 2-3 px wide, and the cross (2 px narrower) left
    the frozen evaluator 80 % accurate on thin test digits (broken strokes); the 2x2 square leaves 94 %."""
    p = F.pad(x, (0, 1, 0, 1))  # zeros: the background
    top = torch.minimum(p[..., :-1, :-1], p[..., :-1, 1:])
    eroded = torch.minimum(top, torch.minimum(p[..., 1:, :-1], p[..., 1:, 1:]))
    dims = tuple(range(1, x.ndim))
    peak_x, peak_e = x.amax(dims, keepdim=True).float(), eroded.amax(dims, keepdim=True).float()
    scale = torch.where(peak_e > 0, peak_x / peak_e.clamp(min=1), torch.ones_like(peak_e))
    return (eroded.float() * scale).round().clamp(0, 255).to(torch.uint8).contiguous()


def stroke(x: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Per-row stroke: kind (N,) in {0 thin, 1 regular, 2 thick}. uint8 (N,1,H,W) -> same."""
    k = kind.view(-1, 1, 1, 1).to(x.device)
    return torch.where(k == 0, thin(x), torch.where(k == 2, thick(x), x))


def colourize(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Put the grey digit into channel `colour` (N,) in {0 red, 1 green, 2 blue}; others 0. (N,1,H,W) -> (N,3,H,W)."""
    onehot = F.one_hot(colour.long(), 3).to(x.dtype).to(x.device)  # (N, 3)
    return (x * onehot[:, :, None, None]).contiguous()  # (N, 3, H, W)
