"""Loading the preprocessed splits (genzoo.data.loading): what it says when a file is missing or unreadable."""

from __future__ import annotations

import pytest

from genzoo.data.loading import load_meta, load_split
from genzoo.engine.errors import DataError


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match="dvc repro preprocess") as err:
        load_split(tmp_path, "train")
    assert "train.pt" in str(err.value)
    (tmp_path / "val.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="unreadable"):
        load_split(tmp_path, "val")
    with pytest.raises(DataError, match="unknown split"):
        load_split(tmp_path, "dev")
    with pytest.raises(DataError, match="dvc repro preprocess"):
        load_meta(tmp_path)
