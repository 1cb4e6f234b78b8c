"""Atomic writes: a finished artifact is replaced whole or not at all, never left half-written.

A write that fails (a full disk, a file-size limit, no permission) leaves the file's previous version as it was
and ends with one line naming the file and saying so (WriteError), instead of a traceback or a truncated file.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from genzoo.engine.errors import WriteError

_UMASK = os.umask(0)
os.umask(_UMASK)

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a full disk, a quota, a file-size limit (RLIMIT_FSIZE)


def write_bytes(path: Path, data: bytes) -> Path:
    """Temp file in the same folder, fsync, os.replace: a reader never sees a partial file, and neither a crash
    nor a full disk leaves one (the temp file is removed, the previous version stays)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_all(handle, data)
            handle.flush()
            os.fsync(handle.fileno())  # a deferred write error (NFS, a quota) shows here, before the replace
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(path, err) from None
        raise
    return path


def _write_all(handle, data: bytes) -> None:
    handle.write(data)  # one seam, so tests can make the disk fill at any write


def _write_error(path: Path, err: OSError) -> WriteError:
    """One line: which file, why, and that its previous version (if any) is intact."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    kept = "its previous version is intact" if path.exists() else "it had no previous version, and none was left"
    hint = "; free some space and run the same command again" if err.errno in NO_SPACE else ""
    return WriteError(f"could not write {path}: {reason}; {kept}{hint}", err.errno)


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


def load_torch(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """Weights and plain containers only (`weights_only=True`): a checkpoint can never run code. `mmap` maps the
    tensors instead of reading them (for a look at a checkpoint's other entries)."""
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
