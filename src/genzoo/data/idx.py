"""Read and write IDX files (the MNIST container), strictly, so a corrupt download fails loudly by name."""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import torch

from genzoo.engine.errors import DataError

# Magic = 0x0000 | type code (0x08 = uint8) | ndim. Only uint8 with 1 or 3 dims is part of the family we use.
_MAGICS = {0x00000801: 1, 0x00000803: 3}
_GZIP_HEAD = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Raw bytes of `path`, gunzipped when it is gzip (detected by content, not by the suffix)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; run `dvc repro download` to fetch it.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc}); check the file's permissions.") from exc
    if data[:2] == _GZIP_HEAD or path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: unreadable gzip ({exc}); delete it and download it again.") from exc
    return data


def parse_idx(data: bytes, name: str | Path) -> torch.Tensor:
    """Decode IDX bytes; `name` is used in messages only. The length must match the header exactly."""
    fix = "delete it and download it again"
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes); {fix}.")
    (magic,) = struct.unpack(">I", data[:4])
    ndim = _MAGICS.get(magic)
    if ndim is None:
        raise DataError(
            f"{name}: bad IDX magic 0x{magic:08x} (expected 0x00000801 or 0x00000803, uint8 with 1 or 3 "
            f"dimensions); the file is not an IDX image/label file - {fix}."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header} bytes); {fix}.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "oversized"
        raise DataError(
            f"{name}: {kind} IDX data: {len(data)} bytes, but the header {tuple(dims)} says {expected}; {fix}."
        )
    flat = torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8)
    return flat.reshape(dims)


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (plain or gzip) as a uint8 tensor of shape (N,) or (N, H, W)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), path)


def idx_bytes(tensor: torch.Tensor) -> bytes:
    """Encode a uint8 tensor of ndim 1 or 3 as uncompressed IDX bytes."""
    if tensor.dtype != torch.uint8 or tensor.ndim not in (1, 3):
        raise ValueError(f"IDX needs a uint8 tensor of ndim 1 or 3, got {tensor.dtype} with ndim {tensor.ndim}")
    magic = 0x00000800 | tensor.ndim
    header = struct.pack(f">I{tensor.ndim}I", magic, *tensor.shape)
    return header + tensor.detach().cpu().contiguous().numpy().tobytes()


def gzip_bytes(data: bytes) -> bytes:
    """Gzip with mtime=0 and no file name, so the same content always gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write `tensor` as IDX to `path`, gzipped (reproducibly) when the name ends in .gz."""
    path = Path(path)
    data = idx_bytes(tensor)
    path.write_bytes(gzip_bytes(data) if path.name.endswith(".gz") else data)
