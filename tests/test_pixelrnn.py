"""PixelRNN's own pieces: the Diagonal BiLSTM's context, the Row LSTM's wavefront over its layers, and the
pixelrnn_diagonal registry name. (What all autoregressive models share: tests/test_pixelcnn.py.)"""

from __future__ import annotations

import pytest
import torch
from helpers import autoregressive, binary_images, composed

from genzoo.models.registry import GENERATIVE, parse_params


def test_the_diagonal_bilstm_sees_all_earlier_pixels_but_the_end_of_the_row_above():
    """Its context is the whole past (unlike the Row LSTM's triangle), except pixel (r-1, W-1) for columns the
    7x7 first layer cannot reach: the right-hand pass is shifted down a row, and no feature sees its own pixel."""
    model, x = autoregressive("diagonal_bilstm"), binary_images(1)
    for r, c in [(5, 0), (14, 13)]:
        x_in = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.logits(x_in)[0, 0, r, c], x_in)
        blind = {(i // 28, i % 28) for i in range(r * 28 + c) if grad.flatten()[i] == 0}
        assert blind == {(r - 1, 27)}


def test_the_row_lstm_wavefront_is_the_layers_run_one_after_another():
    """logits() runs a stack of Row LSTMs as a wavefront over the layers; run layer by layer, the same values and
    the same gradients. Three layers (two ramps), a non-square image, generic initial states and biases."""
    shape = (1, 9, 12)
    model, x = autoregressive("row_lstm", shape=shape, layers=3), binary_images(2, shape)

    def layer_by_layer(x01: torch.Tensor) -> torch.Tensor:
        f = model.first(model._input(x01))
        for lay in model.layers:
            f = lay(f)
        return model.head(f)

    weights = list(model.parameters())
    wavefront, plain = model.logits(x), layer_by_layer(x)
    torch.testing.assert_close(wavefront, plain, rtol=0, atol=1e-12)
    upstream = torch.randn_like(plain)
    grads = torch.autograd.grad(wavefront, weights, upstream), torch.autograd.grad(plain, weights, upstream)
    for got, want in zip(*grads):
        assert got.abs().sum() > 0  # every weight reaches the output, the initial states included
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("profile", ["cpu", "gpu", "tiny"])
def test_pixelrnn_diagonal_is_the_pixelrnn_with_the_diagonal_cell(tmp_path, profile):
    """The paper's two cells get a stage each: a second name of the same model, as aae_2d and flow_vae_deep. On
    the cpu and tiny profiles both cells are trained at one size (on cpu the diagonal cell for fewer steps,
    `max_steps`, its stage's time: issue 30), so that their rows compare the cells at one size."""
    params = parse_params(composed(tmp_path, f"profile={profile}"))
    assert GENERATIVE["pixelrnn_diagonal"] is GENERATIVE["pixelrnn"]
    row, diagonal = params.model("pixelrnn"), params.model("pixelrnn_diagonal")
    assert (row.cell, diagonal.cell) == ("row", "diagonal")
    if profile == "gpu":
        assert (diagonal.layers, diagonal.hidden) == (7, 16)  # the paper's MNIST Diagonal BiLSTM
    else:
        assert {k: v for k, v in vars(row).items() if k not in ("cell", "max_steps")} == \
            {k: v for k, v in vars(diagonal).items() if k not in ("cell", "max_steps")}
        assert (row.max_steps, diagonal.max_steps) == ((0, 430) if profile == "cpu" else (0, 0))
