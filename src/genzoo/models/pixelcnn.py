"""PixelCNN — van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks" (ICML).

An exact likelihood: log p(x) = sum_i log p(x_i | x_<i) over the pixels in raster order, every conditional read
off one pass of a convolution stack whose kernels are masked so that the output at pixel i sees only pixels
before i. Mask A (centre tap off) on the first 7x7 layer; mask B (centre on) after it, which is safe because from
then on the feature at the centre itself depends only on earlier pixels. The paper's Table 1 and Fig. 5: 7x7
mask A, residual blocks 2h -> 1x1 -> h -> 3x3 mask B -> h -> 1x1 -> 2h, two ReLU + 1x1 layers, then a sigmoid per
pixel (binary MNIST) or a 256-way softmax over grey levels (`levels`). The paper does not give its
MNIST PixelCNN's width or depth; the defaults (h = 32, 12 blocks) are our choice. Ours: Adam and dynamically
binarized training digits; the paper's RMSProp and one fixed binarization are options (`optimizer`, `binarization`:
the paper recipe in pipeline/conf/recipes.yaml). Scored on the one fixed binarization of the test set.

Sampling takes one step per pixel. Every layer's feature at pixel i depends on pixels < i only, so it is final
the moment step i is reached: the sampler caches each layer's feature maps and computes, per step, only the
features *at* that pixel from the cached neighbourhoods — 784 small steps that add up to one forward pass of the
batch, instead of 784 whole passes. The tests check it against the parallel forward.

`Autoregressive` (loss, exact likelihood, the sampling loop, pictures) is shared with pixelrnn.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.models.base import ZooModel
from genzoo.models.blocks import BINARIZATIONS, OPTIMIZERS, clip_gradients, optimizer, to_unit, training_bits
from genzoo.params import TrainConfig, param

FIRST_KERNEL = 7  # the first, mask-A layer (both models); the sampler pads the image by FIRST_KERNEL // 2
COMPLETIONS = 8  # sampled bottom halves shown per test digit


def causal_mask(kh: int, kw: int, kind: str) -> torch.Tensor:
    """(kh, kw) ones on the taps before the centre in raster order, and on the centre itself for mask B."""
    mask = torch.zeros(kh, kw)
    mask[:kh // 2] = 1
    mask[kh // 2, :kw // 2 + (kind == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution that cannot see the pixels after its centre (one colour channel: no channel groups)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], kind: str):
        super().__init__(c_in, c_out, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
        self.register_buffer("mask", causal_mask(*kernel, kind), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)  # the masked taps start (and, having no gradient, stay) at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def at(self, cache: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """The output at pixel (r, c) alone, (n, c_out), from the input cached position-major with this layer's
        padding, (H + kh - 1, W + kw - 1, n, c_in): each position's (n, c_in) block is contiguous."""
        kh, kw = self.kernel_size
        rows = kh // 2 + 1  # the rows below the centre are masked out: skip them
        window = cache[r:r + rows, c:c + kw].permute(2, 0, 1, 3).reshape(cache.shape[2], -1)  # (n, rows*kw*c_in)
        weight = (self.weight * self.mask)[:, :, :rows].permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        return F.linear(window, weight, self.bias)


def pointwise(conv: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to one pixel's features (n, c_in) -> (n, c_out)."""
    return F.linear(v, conv.weight.flatten(1), conv.bias)


class Head(nn.Module):
    """ReLU, 1x1, ReLU, 1x1 (Table 1's two output layers; mask B on a 1x1 kernel is no mask): logits per pixel."""

    def __init__(self, c_in: int, width: int, outputs: int):
        super().__init__()
        self.hidden, self.out = nn.Conv2d(c_in, width, 1), nn.Conv2d(width, outputs, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(F.relu(f))))

    def at(self, f: torch.Tensor) -> torch.Tensor:
        return pointwise(self.out, F.relu(pointwise(self.hidden, F.relu(f))))


class Autoregressive(ZooModel):
    """What PixelCNN and PixelRNN share. A subclass defines `logits(x01)` -> (B, K, H, W), the parallel pass
    (K = 1 Bernoulli logit, or 256 grey-level logits), and the sampler's `_begin(n)` -> cache and
    `_step(cache, r, c)` -> (n, K): the logits at pixel (r, c), given the pixels written into cache["x"]
    (position-major, see `MaskedConv2d.at`)."""

    samples = True
    likelihood = "exact"  # log_likelihood is log p(x) itself, not a bound: its k means nothing

    def __init__(self, config, image_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        if image_shape[0] != 1:
            raise ValueError(f"{type(self).__module__}: one colour channel only (got image shape {image_shape}); "
                             "colour needs the paper's R/G/B channel masks")
        self.config, self.image_shape, self.num_classes = config, image_shape, num_classes
        self.outputs = 1 if config.levels == 2 else config.levels

    @property
    def binary_samples(self) -> bool:
        return self.config.levels == 2  # its draws are 0/1 pixels, scored against the binarized test images

    @staticmethod
    def _input(x01: torch.Tensor) -> torch.Tensor:
        return 2 * x01 - 1  # centred; the zero padding then reads as mid-grey

    def nll(self, x01: torch.Tensor) -> torch.Tensor:
        """-log p(x) in nats per image (B,), exact; x01 (B, 1, H, W) binary (levels 2) or grey levels / 255."""
        logits = self.logits(x01)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 under autocast: sum in fp32
        if self.config.levels == 2:
            nll = F.binary_cross_entropy_with_logits(logits, x01.to(logits.dtype), reduction="none")
            return nll.flatten(1).sum(1)
        target = (x01[:, 0] * (self.config.levels - 1)).round().long()  # (B, H, W)
        return F.cross_entropy(logits, target, reduction="none").flatten(1).sum(1)

    def _data(self, batch: dict[str, torch.Tensor], train: bool) -> torch.Tensor:
        if self.config.levels == 2:
            # scores always read the fixed binarization; training draws afresh or reads it too (static)
            return training_bits(batch, self.config.binarization) if train else batch["xb"].float()
        return to_unit(batch["x"])

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": optimizer(self.config.optimizer, self.parameters(), self.config.lr)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        loss = self.nll(self._data(batch, train=True)).mean()
        opt["model"].zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            clip_gradients(self.parameters(), self.config.grad_clip)
        opt["model"].step()
        loss = loss.detach()
        return {"loss": loss, "bits_per_dim": loss / (math.prod(self.image_shape) * math.log(2))}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nll = self.nll(self._data(batch, train=False)).mean()
        return {"nll": nll, "bits_per_dim": nll / (math.prod(self.image_shape) * math.log(2))}

    @torch.no_grad()
    def log_likelihood(self, xb: torch.Tensor, k: int = 1) -> torch.Tensor:
        """Exact log p(x) in nats per image (B,); `k` is ignored (nothing to bound). xb holds intensities in
        [0, 1]: binary for levels 2, and read as grey level round(255 x) for levels 256."""
        return -self.nll(xb.to(self.first.weight.dtype))

    def _draw(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config.levels == 2:
            return torch.bernoulli(torch.sigmoid(logits[:, 0]))
        return torch.multinomial(F.softmax(logits, dim=-1), 1)[:, 0].float() / (self.config.levels - 1)

    @torch.no_grad()
    def _autoregress(self, given: torch.Tensor, start: int, keep_logits: bool = False):
        """Pixels before raster index `start` are copied from `given` (n, 1, H, W), the rest drawn one at a
        time. With keep_logits, also the (n, K, H, W) logits of every step (teacher forcing when start = H*W)."""
        _, height, width = self.image_shape
        cache = self._begin(len(given))
        out = given.to(cache["x"].dtype).clone()
        pad = FIRST_KERNEL // 2
        kept = out.new_zeros(len(given), self.outputs, height, width) if keep_logits else None
        for i in range(height * width):
            r, c = divmod(i, width)
            logits = self._step(cache, r, c)  # (n, K)
            if kept is not None:
                kept[:, :, r, c] = logits
            if i >= start:
                out[:, 0, r, c] = self._draw(logits)
            cache["x"][r + pad, c + pad, :, 0] = self._input(out[:, 0, r, c])
        return (out, kept) if keep_logits else out

    def _empty_image(self, n: int) -> torch.Tensor:
        """The sampler's input cache (H + 6, W + 6, n, 1): the padded image, all mid-grey (zero) so far."""
        pad = FIRST_KERNEL // 2
        _, height, width = self.image_shape
        return self.first.weight.new_zeros(height + 2 * pad, width + 2 * pad, n, 1)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        blank = torch.zeros(n, *self.image_shape, device=next(self.parameters()).device)
        return self._autoregress(blank, start=0)

    @torch.no_grad()
    def complete(self, x01: torch.Tensor, rows: int) -> torch.Tensor:
        """Keep the top `rows` rows of x01 (n, 1, H, W) and sample the rest."""
        return self._autoregress(x01, start=rows * self.image_shape[2])

    @torch.no_grad()
    def pictures(self, data: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, int]]:
        """Samples, and completions: per test digit one row of the given top half (bottom greyed out),
        COMPLETIONS sampled bottom halves, and the whole digit as the model sees it."""
        grids = {"samples": (self.sample(100), 10)}
        test = data["test"][:10]
        real = torch.bernoulli(test) if self.config.levels == 2 else test
        half = self.image_shape[1] // 2
        done = self.complete(real.repeat_interleave(COMPLETIONS, 0), half).view(len(real), COMPLETIONS,
                                                                                 *self.image_shape)
        shown = real.clone()
        shown[:, :, half:] = 0.5
        rows = torch.cat([shown[:, None], done, real[:, None]], dim=1)  # (10, COMPLETIONS + 2, 1, H, W)
        grids["completions"] = (rows.flatten(0, 1), COMPLETIONS + 2)
        return grids

    @torch.no_grad()
    def extra_scores(self, data: dict, evaluator) -> dict[str, float]:
        """For the 256-level switch: the exact test NLL on the grey levels themselves (the binary protocol's
        `test_nll` then only scores black-and-white images under a grey-level model)."""
        if self.config.levels == 2:
            return {}
        x = data["test"]["x"]
        nll = torch.cat([self.nll(to_unit(x[i:i + 100])).double() for i in range(0, len(x), 100)]).mean().item()
        return {"test_nll_grey": nll, "bits_per_dim_grey": nll / (math.prod(self.image_shape) * math.log(2))}


# ---------------------------------------------------------------------------------------------------- PixelCNN


@dataclass
class Config(TrainConfig):
    levels: int = param(2, choices=(2, 256))  # 2: Bernoulli pixels (binarized MNIST); 256: softmax on grey levels
    binarization: str = param("dynamic", choices=BINARIZATIONS)  # levels 2: a fresh draw per step, or static
    hidden: int = param(32, gt=0)  # h: the residual stream carries 2h features, the 3x3 convolutions h
    blocks: int = param(12, ge=0)  # residual blocks after the 7x7 mask-A layer
    head: int = param(64, gt=0)  # width of the first output 1x1 layer
    grad_clip: float = param(0.0, ge=0)  # global gradient-norm clip; 0 = off
    optimizer: str = param("adam", choices=OPTIMIZERS)  # the paper: RMSProp


class Block(nn.Module):
    """Fig. 5 (left): 2h -> ReLU, 1x1 -> h -> ReLU, 3x3 mask B -> h -> ReLU, 1x1 -> 2h, added to the input."""

    def __init__(self, h: int):
        super().__init__()
        self.reduce = nn.Conv2d(2 * h, h, 1)
        self.conv = MaskedConv2d(h, h, (3, 3), "B")
        self.expand = nn.Conv2d(h, 2 * h, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.expand(F.relu(self.conv(F.relu(self.reduce(F.relu(f))))))

    def begin(self, n: int, height: int, width: int) -> torch.Tensor:
        return self.conv.weight.new_zeros(height + 2, width + 2, n, self.conv.in_channels)  # the 3x3's input

    def at(self, cache: torch.Tensor, f: torch.Tensor, r: int, c: int) -> torch.Tensor:
        cache[r + 1, c + 1] = F.relu(pointwise(self.reduce, F.relu(f)))
        return f + pointwise(self.expand, F.relu(self.conv.at(cache, r, c)))


class Model(Autoregressive):
    Config = Config

    def __init__(self, config: Config, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__(config, image_shape, num_classes)
        h = config.hidden
        self.first = MaskedConv2d(1, 2 * h, (FIRST_KERNEL, FIRST_KERNEL), "A")
        self.blocks = nn.ModuleList(Block(h) for _ in range(config.blocks))
        self.head = Head(2 * h, config.head, self.outputs)

    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        f = self.first(self._input(x01))  # (B, 2h, H, W)
        for block in self.blocks:
            f = block(f)
        return self.head(f)  # (B, K, H, W)

    def _begin(self, n: int) -> dict:
        x = self._empty_image(n)
        _, height, width = self.image_shape
        return {"x": x, "blocks": [b.begin(n, height, width) for b in self.blocks]}

    def _step(self, cache: dict, r: int, c: int) -> torch.Tensor:
        f = self.first.at(cache["x"], r, c)  # (n, 2h)
        for block, block_cache in zip(self.blocks, cache["blocks"]):
            f = block.at(block_cache, f, r, c)
        return self.head.at(f)
