"""genzoo.engine.io: atomic writes. A disk that fills (or a file-size limit) while a file is written leaves its
previous version intact, leaves no temp file, and ends with one line naming the file and saying so. Simulated three
ways: an injected ENOSPC in the write path, RLIMIT_FSIZE in a subprocess (works in any container), and a real
size-limited tmpfs where this machine lets us mount one."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import genzoo.engine.io as engine_io
from genzoo.engine.errors import GenzooError, WriteError
from genzoo.engine.io import load_torch, save_torch, write_bytes, write_json

PREVIOUS = b"the previous version\n"


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "deep" / "file.bin"
    write_bytes(target, PREVIOUS)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
    save_torch({"w": torch.arange(3)}, tmp_path / "ckpt.pt")
    assert torch.equal(load_torch(tmp_path / "ckpt.pt")["w"], torch.arange(3))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_keeps_the_previous_version_and_says_so(tmp_path, monkeypatch, code):
    target = tmp_path / "metrics.json"
    target.write_bytes(PREVIOUS)

    def full(handle, data):
        handle.write(data[:3])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(engine_io, "_write_all", full)
    with pytest.raises(WriteError) as err:
        write_json(target, {"loss": 1.0})
    assert isinstance(err.value, GenzooError) and err.value.errno == code  # the CLI prints it as one line
    assert str(err.value) == (f"could not write {target}: {os.strerror(code)}; its previous version is intact; "
                              f"free some space and run the same command again")
    assert target.read_bytes() == PREVIOUS
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_full_disk_on_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def full(handle, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(engine_io, "_write_all", full)
    with pytest.raises(WriteError, match="it had no previous version, and none was left"):
        write_bytes(tmp_path / "new.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_other_write_failures_name_the_file_too(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(WriteError, match=rf"could not write {blocker / 'vae' / 'model.pt'}: ") as err:
        write_bytes(blocker / "vae" / "model.pt", b"weights")
    assert "free some space" not in str(err.value)


def _write_under_a_size_limit(tmp_path, limit: int, size: int) -> subprocess.CompletedProcess:
    """In a subprocess limited to files of `limit` bytes (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write
    fails with EFBIG), write `size` bytes over target.bin, which holds PREVIOUS."""
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from genzoo.engine.errors import GenzooError
        from genzoo.engine.io import write_bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        try:
            write_bytes(Path(sys.argv[1]), b"x" * {size})
        except GenzooError as err:
            sys.exit(f"error: {{err}}")
    """)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path / "target.bin")], capture_output=True,
                          text=True, timeout=120)


def test_a_file_size_limit_hit_mid_write_keeps_the_previous_version(tmp_path):
    (tmp_path / "target.bin").write_bytes(PREVIOUS)
    full = _write_under_a_size_limit(tmp_path, limit=64 << 10, size=1 << 20)
    assert full.returncode == 1
    lines = full.stderr.strip().splitlines()
    assert lines == [f"error: could not write {tmp_path / 'target.bin'}: File too large; its previous version is "
                     f"intact; free some space and run the same command again"]
    assert (tmp_path / "target.bin").read_bytes() == PREVIOUS
    assert [p.name for p in tmp_path.iterdir()] == ["target.bin"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB tmpfs at tmp_path/fs, where this machine lets us mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(small_tmpfs):
    ckpt = small_tmpfs / "ckpt.pt"
    save_torch({"step": 2, "w": torch.zeros(10_000)}, ckpt)  # ~40 KB
    with pytest.raises(WriteError, match=rf"could not write {ckpt}: No space left on device; its previous version "
                                         r"is intact"):
        save_torch({"step": 4, "w": torch.zeros(100_000)}, ckpt)  # ~400 KB: more than the disk holds
    assert load_torch(ckpt)["step"] == 2 and [p.name for p in small_tmpfs.iterdir()] == ["ckpt.pt"]
