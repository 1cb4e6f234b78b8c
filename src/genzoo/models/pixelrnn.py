"""PixelRNN — van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks" (ICML).

The same exact autoregressive likelihood as PixelCNN (pixelcnn.py: 7x7 mask-A first layer, two 1x1 output layers,
Bernoulli or 256-way pixels), with the masked 3x3 blocks replaced by convolutional LSTM layers (Table 1), each
wrapped in a residual connection (Fig. 5: 2h -> LSTM -> h -> 1x1 -> 2h, added), learned initial states (§5.2):
- Row LSTM (`cell: row`): rows top to bottom; gates = input-to-state (1x3 conv over the row, mask B, computed for
  the whole map at once) + state-to-state (unmasked 1x3 conv over the previous row's hidden state). Triangular
  context above the pixel.
- Diagonal BiLSTM (`cell: diagonal`): the map is skewed (row r shifted right by r) so that each column is a
  diagonal; an LSTM runs along the columns with a 2x1 state-to-state kernel over (pixel above, pixel to the
  side), input-to-state a 1x1 conv (mask B). Two directions (the second on the mirrored map); the right-hand
  output is shifted down one row before the sum, since at the same row it has seen pixels to the right.
  The paper's MNIST size: 7 layers, h = 16. In unskewed terms a state at (r, c) reads the states at (r-1, c) and
  (r, c-1), and the cell at (r, c-1); outside the image the learned initial state stands in. A consequence of
  the shift (tested): the context is every earlier pixel except (r-1, W-1) for columns c < W-4, which no
  feature of row r-1 sees and the 7x7 first layer reaches only from column W-4 on.
The paper gives an MNIST size only for the Diagonal BiLSTM (7 layers, h = 16); the Row LSTM uses the same by
default. A stack of Row LSTMs runs as a wavefront over its layers (`row_wavefront`): the same function in fewer
sequential steps. Gradient-norm clipping (on by default) is our addition: LSTMs over 28-55 steps spike now and then.

Sampling: each layer's state at a pixel depends on earlier pixels only, so it is computed once, at its own step,
from cached states (the right-hand pass of a row runs once the row is complete): 784 small steps in all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.blocks import BINARIZATIONS, OPTIMIZERS
from genzoo.models.pixelcnn import FIRST_KERNEL, Autoregressive, Head, MaskedConv2d
from genzoo.params import TrainConfig, param


@dataclass
class Config(TrainConfig):
    cell: str = param("row", choices=("row", "diagonal"))
    levels: int = param(2, choices=(2, 256))  # 2: Bernoulli pixels (binarized MNIST); 256: softmax on grey levels
    binarization: str = param("dynamic", choices=BINARIZATIONS)  # levels 2: a fresh draw per step, or static
    hidden: int = param(16, gt=0)  # h: LSTM state size; the residual stream carries 2h features
    layers: int = param(7, gt=0)  # LSTM layers
    head: int = param(32, gt=0)  # width of the first output 1x1 layer
    grad_clip: float = param(1.0, ge=0)  # global gradient-norm clip; 0 = off
    optimizer: str = param("adam", choices=OPTIMIZERS)  # the paper: RMSProp


def lstm(gates: torch.Tensor, cell: torch.Tensor, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """gates (..., groups * 4h) = per group [input, forget, output, candidate]; cell (..., groups * h). The
    state is kept in (at least) fp32 under bf16 autocast: the cell sums over up to 55 steps."""
    gates = gates.to(torch.promote_types(gates.dtype, torch.float32))
    i, f, o, g = (t.flatten(-2) for t in gates.unflatten(-1, (groups, 4, -1)).unbind(-2))
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, H+W-1), row r shifted right by r: column j holds the diagonal r + c = j."""
    b, ch, height, width = x.shape
    flat = F.pad(x, (0, height)).flatten(2)[:, :, :height * (width + height - 1)]
    return flat.view(b, ch, height, width + height - 1)


def unskew(s: torch.Tensor, width: int) -> torch.Tensor:
    """The inverse of `skew`: (B, C, H, H+W-1) -> (B, C, H, W)."""
    b, ch, height, _ = s.shape
    flat = F.pad(F.pad(s, (0, 1)).flatten(2), (0, height))
    return flat.view(b, ch, height, width + height + 1)[:, :, :, :width]


def row_taps(h: torch.Tensor) -> torch.Tensor:
    """(..., W, h) -> (..., W, 3h): each position's [left, own, right] neighbours, zero beyond the row's ends."""
    padded = F.pad(h, (0, 0, 1, 1))
    return torch.cat([padded[..., :-2, :], padded[..., 1:-1, :], padded[..., 2:, :]], dim=-1)


class RowLSTM(nn.Module):
    """States are channels-last rows (B, W, h): the recurrent 1x3 convolution is then one small matmul over
    the three taps (much faster than a convolution call for these sizes on a CPU)."""

    def __init__(self, h: int, height: int, width: int):
        super().__init__()
        self.shape = (height, width)
        self.input_to_state = MaskedConv2d(2 * h, 4 * h, (1, 3), "B")
        self.state_to_state = nn.Linear(3 * h, 4 * h)  # the unmasked 1x3 kernel over the row above
        self.out = nn.Linear(h, 2 * h)  # 1x1 back to the residual stream
        self.h0, self.c0 = nn.Parameter(torch.zeros(h)), nn.Parameter(torch.zeros(h))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, _, height, width = f.shape
        gates = self.input_to_state(f).permute(0, 2, 3, 1)  # (B, H, W, 4h), all rows at once
        h, c = self.h0.expand(b, width, -1), self.c0.expand(b, width, -1)
        rows = []
        for gates_row in gates.unbind(1):  # unbind, not slicing: its backward is one stack, not H zero-fills
            h, c = lstm(gates_row + self.state_to_state(row_taps(h)), c)  # (B, W, h)
            rows.append(h)
        return f + self.out(torch.stack(rows, dim=1)).permute(0, 3, 1, 2)

    def begin(self, n: int) -> dict:
        height, width = self.shape
        return {"f": self.h0.new_zeros(height, width + 2, n, 2 * len(self.h0)),  # the input, padded like the 1x3
                "h": self.h0.expand(n, width, -1).clone(), "c": self.c0.expand(n, width, -1).clone(), "ss": None}

    def at(self, cache: dict, f: torch.Tensor, r: int, c: int) -> torch.Tensor:
        if c == 0:  # a new row: its state-to-state term from the finished row above, all columns at once
            cache["ss"] = self.state_to_state(row_taps(cache["h"]))  # (n, W, 4h)
        cache["f"][r, c + 1] = f
        gates = self.input_to_state.at(cache["f"], r, c) + cache["ss"][:, c]
        h, cell = lstm(gates, cache["c"][:, c])  # reads the cell above, then replaces it
        cache["h"][:, c], cache["c"][:, c] = h, cell
        return f + self.out(h)


def row_wavefront(layers: nn.ModuleList, f: torch.Tensor) -> torch.Tensor:
    """A stack of RowLSTMs run as a wavefront: tick t computes row t - l of every layer l in one batched matmul
    (row r of layer l needs only row r of layer l - 1 and its own row r - 1), so the stack takes H + L - 1
    sequential steps instead of H * L. The same function as running the layers one after another (tested).
    Why: on a GPU each of these small steps costs a dozen kernels whatever its size (7 layers: 34 steps, not
    196); the L(L - 1) idle layer-rows at the ramps compute on zeros and are discarded."""
    b, c2, height, width = f.shape
    n, h = len(layers), c2 // 2
    masked = [(lay.input_to_state.weight * lay.input_to_state.mask)[:, :, 0, :2] for lay in layers]  # (4h, 2h, 2)
    weight = torch.stack([torch.cat([m[..., 0], m[..., 1], lay.state_to_state.weight], 1)  # (4h, 7h): the taps
                          for m, lay in zip(masked, layers)]).transpose(1, 2)  # [left, own] of x, row_taps of h
    bias = torch.stack([lay.input_to_state.bias + lay.state_to_state.bias for lay in layers]).unsqueeze(1)
    out_weight = torch.stack([lay.out.weight for lay in layers]).transpose(1, 2)  # (L, h, 2h)
    out_bias = torch.stack([lay.out.bias for lay in layers]).unsqueeze(1)
    state = torch.stack([lay.h0 for lay in layers])[:, None, None].expand(n, b, width, h)  # (L, B, W, h)
    cell = torch.stack([lay.c0 for lay in layers])[:, None, None].expand(n, b, width, h)
    rows = F.pad(f.permute(0, 2, 3, 1), (0, 0, 0, 0, 0, n - 1)).unbind(1)  # H + L - 1 rows (B, W, 2h), zeros last
    x = torch.cat([rows[0][None], f.new_zeros(n - 1, b, width, c2)])  # (L, B, W, 2h): layer l's input row
    outputs = []
    for t in range(height + n - 1):
        x_left, padded = F.pad(x, (0, 0, 1, 0))[:, :, :width], F.pad(state, (0, 0, 1, 1))
        taps = torch.cat([x_left, x, padded[:, :, :-2], padded[:, :, 1:-1], padded[:, :, 2:]], -1)  # (L, B, W, 7h)
        gates = torch.baddbmm(bias, taps.flatten(1, 2), weight).view(n, b, width, 4 * h)
        new_state, new_cell = lstm(gates, cell)
        if t < n - 1:  # layers above t have not reached row 0 yet: they keep their initial state
            started = (torch.arange(n, device=f.device) <= t).view(n, 1, 1, 1)
            new_state, new_cell = torch.where(started, new_state, state), torch.where(started, new_cell, cell)
        state, cell = new_state, new_cell
        y = x + torch.baddbmm(out_bias, state.flatten(1, 2), out_weight).view(n, b, width, c2)
        if t >= n - 1:
            outputs.append(y[-1])  # the top layer's row t - L + 1
        if t + 1 < len(rows):
            x = torch.cat([rows[t + 1][None], y[:-1]])  # each layer's output row moves up to the next layer
    return torch.stack(outputs, 1).permute(0, 3, 1, 2)


class DiagonalBiLSTM(nn.Module):
    """Both directions run in one scan over the skewed columns; states are channels-last (B, H, 2h) = [left,
    right], and each direction's 2x1 state-to-state kernel is a matmul over its [above, beside] states. A
    skewed column has image pixels in a band of rows only (half the skewed map is padding): the scan computes
    that band and keeps the learned initial state everywhere else, which is what an off-image neighbour reads."""

    def __init__(self, h: int, height: int, width: int):
        super().__init__()
        self.h, self.shape = h, (height, width)
        self.input_to_state = nn.Conv2d(2 * h, 8 * h, 1)  # [left 4h, right 4h]; mask B on 1x1 = no mask
        self.state_to_state = nn.ModuleList(nn.Linear(2 * h, 4 * h) for _ in range(2))  # (above, beside) -> gates
        self.out = nn.Linear(h, 2 * h)
        self.h0, self.c0 = nn.Parameter(torch.zeros(2 * h)), nn.Parameter(torch.zeros(2 * h))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, _, height, width = f.shape
        h = self.h
        left, right = self.state_to_state  # weights (4h, 2h) over [above, beside] per direction
        gates = self.input_to_state(f)
        gates = skew(torch.cat([gates[:, :4 * h], gates[:, 4 * h:].flip(3)], 1))  # right pass: mirrored map
        gates = gates.permute(0, 3, 2, 1) + torch.cat([left.bias, right.bias])  # (B, H+W-1, H, 8h)
        weight = torch.cat([torch.block_diag(left.weight[:, :h], right.weight[:, :h]),  # (16h, 2h): a state's
                            torch.block_diag(left.weight[:, h:], right.weight[:, h:])])  # pull as above, as beside
        h_init, c_init = self.h0.expand(b, height, -1), self.c0.expand(b, height, -1)
        top = F.linear(self.h0, weight[:8 * h]).expand(b, 1, -1)  # the state above row 0, through its kernel
        state, cell, columns = h_init, c_init, []
        for j, gates_column in enumerate(gates.unbind(1)):
            lo, hi = max(0, j - width + 1), min(height, j + 1)  # rows [lo, hi) of column j are image pixels
            taps = F.linear(state[:, max(lo - 1, 0):hi], weight)  # one matmul for both taps, from the row above lo
            as_above, as_beside = taps.split(8 * h, dim=-1)
            if lo == 0:
                as_above = torch.cat([top, as_above[:, :-1]], 1)
            else:
                as_above, as_beside = as_above[:, :-1], as_beside[:, 1:]
            new_state, new_cell = lstm(gates_column[:, lo:hi] + as_above + as_beside, cell[:, lo:hi], groups=2)
            state = torch.cat([h_init[:, :lo], new_state, h_init[:, hi:]], 1)
            cell = torch.cat([c_init[:, :lo], new_cell, c_init[:, hi:]], 1)
            columns.append(state)
        states = unskew(torch.stack(columns, dim=3).transpose(1, 2), width)  # (B, 2h, H, W)
        left_out, right_out = states[:, :h], states[:, h:].flip(3)
        right_out = F.pad(right_out, (0, 0, 1, 0))[:, :, :height]  # down one row: it saw the pixels to its right
        return f + self.out((left_out + right_out).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def begin(self, n: int) -> dict:
        height, width = self.shape
        h = self.h
        return {"f": self.h0.new_zeros(n, width, 2 * h),  # this row's inputs, for its right-hand pass
                "left": self.h0[:h].expand(n, width, -1).clone(),  # left states: the row above, then this row
                "right": self.h0[h:].expand(n, width, -1).clone(), "cell": None}

    def _right_pass(self, cache: dict) -> None:
        """Once a row is complete: its right-to-left states, over the stored states of the row above."""
        h, (_, width) = self.h, self.shape
        gates = F.linear(cache["f"], self.input_to_state.weight[4 * h:, :, 0, 0], self.input_to_state.bias[4 * h:])
        right = cache["right"]  # (n, W, h)
        beside, cell = self.h0[h:].expand(len(right), -1), self.c0[h:].expand(len(right), -1)
        for c in reversed(range(width)):
            taps = torch.cat([right[:, c], beside], -1)  # [above (row before), beside (this row, to the right)]
            beside, cell = lstm(gates[:, c] + self.state_to_state[1](taps), cell)
            right[:, c] = beside

    def at(self, cache: dict, f: torch.Tensor, r: int, c: int) -> torch.Tensor:
        h = self.h
        if c == 0:
            if r > 0:
                self._right_pass(cache)  # row r-1 is complete
            cache["cell"] = self.c0[:h].expand(len(f), -1)
        cache["f"][:, c] = f
        gates = F.linear(f, self.input_to_state.weight[:4 * h, :, 0, 0], self.input_to_state.bias[:4 * h])
        beside = cache["left"][:, c - 1] if c > 0 else self.h0[:h].expand(len(f), -1)
        taps = torch.cat([cache["left"][:, c], beside], -1)
        state, cache["cell"] = lstm(gates + self.state_to_state[0](taps), cache["cell"])
        cache["left"][:, c] = state
        right = cache["right"][:, c] if r > 0 else 0.0  # the right pass of the row above (none for row 0)
        return f + self.out(state + right)


class Model(Autoregressive):
    Config = Config

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__(config, image_shape, num_classes)
        h, (_, height, width) = config.hidden, image_shape
        self.first = MaskedConv2d(1, 2 * h, (FIRST_KERNEL, FIRST_KERNEL), "A")
        layer = RowLSTM if config.cell == "row" else DiagonalBiLSTM
        self.layers = nn.ModuleList(layer(h, height, width) for _ in range(config.layers))
        self.head = Head(2 * h, config.head, self.outputs)

    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        f = self.first(self._input(x01))  # (B, 2h, H, W)
        if self.config.cell == "row" and len(self.layers) > 1:  # one layer: the wavefront is its own scan
            return self.head(row_wavefront(self.layers, f))
        for lay in self.layers:
            f = lay(f)
        return self.head(f)  # (B, K, H, W)

    def _begin(self, n: int) -> dict:
        return {"x": self._empty_image(n), "layers": [lay.begin(n) for lay in self.layers]}

    def _step(self, cache: dict, r: int, c: int) -> torch.Tensor:
        f = self.first.at(cache["x"], r, c)  # (n, 2h)
        for lay, lay_cache in zip(self.layers, cache["layers"]):
            f = lay.at(lay_cache, f, r, c)
        return self.head.at(f)
