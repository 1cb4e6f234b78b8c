"""Atomic writes: a finished artifact is replaced whole or not at all, never left half-written."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes(path: Path, data: bytes) -> Path:
    """Temp file in the same folder + os.replace: a reader never sees a partial file, and a crash leaves none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(obj: Any, path: Path) -> Path:
    """torch.save into memory first: the zip records are then named 'archive/' whatever the file is called, so
    the same tensors always give the same bytes (saving to a temp name would leak that name into the file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    """Weights and plain containers only (`weights_only=True`): a checkpoint can never run code."""
    return torch.load(path, map_location=map_location, weights_only=True)
