"""Measurements taken once per process: evaluate scores many models against the same images (the evaluator's
features of the test digits, which the Pix2Pix pair's and EnhanceNet pair's truth images repeat; the EnhanceNet
pair's one bicubic baseline), so a second ask for the same measurement of the same content gets the first's answer.

A key is a digest of the content (dtype, shape and bytes of every tensor, every weight of a module), never an
object's identity: a model trained further, or a tensor changed in place, is a new key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")
_TAKEN: dict[tuple, object] = {}


def digest(*parts: torch.Tensor | nn.Module | str | int | float | None) -> str:
    """sha256 of tensors (dtype, shape, bytes), modules (class and every parameter and buffer) and plain values."""
    sha = hashlib.sha256()

    def tensor(t: torch.Tensor) -> None:
        sha.update(str((t.dtype, tuple(t.shape))).encode())
        sha.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())

    for part in parts:
        if isinstance(part, torch.Tensor):
            tensor(part)
        elif isinstance(part, nn.Module):
            sha.update(type(part).__qualname__.encode())
            for name, value in part.state_dict().items():
                sha.update(name.encode())
                tensor(value)
        else:
            sha.update(repr(part).encode())
        sha.update(b"|")
    return sha.hexdigest()


def once(kind: str, key: str, compute: Callable[[], T]) -> T:
    """compute() the first time (kind, key) is asked in this process; that result ever after."""
    if (kind, key) not in _TAKEN:
        _TAKEN[(kind, key)] = compute()
    return _TAKEN[(kind, key)]  # type: ignore[return-value]
