"""The IDX codec (genzoo.data.idx): round trips, reproducible gzip, corrupt files refused with their path."""

from __future__ import annotations

import gzip

import pytest
import torch

from genzoo.data.idx import read_idx, write_idx
from genzoo.engine.errors import DataError


def test_idx_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    labels = torch.arange(5, dtype=torch.uint8)
    for name, tensor in (("a-idx3-ubyte", images), ("b-idx1-ubyte.gz", labels)):
        write_idx(tmp_path / name, tensor)
        assert torch.equal(read_idx(tmp_path / name), tensor)
    first = (tmp_path / "b-idx1-ubyte.gz").read_bytes()
    write_idx(tmp_path / "b-idx1-ubyte.gz", labels)
    assert (tmp_path / "b-idx1-ubyte.gz").read_bytes() == first  # mtime=0: reproducible gzip


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "bad IDX magic"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "oversized"),
        (lambda b: gzip.compress(b)[:-10], "unreadable gzip"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mangle, message):
    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, torch.arange(10, dtype=torch.uint8))
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)
