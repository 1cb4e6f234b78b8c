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


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "pickle"])
def test_unreadable_split_says_so_in_complete_sentences(tmp_path, damage):
    """Whatever torch raises (a cut zip, bytes of nothing, a pickle of other objects), the message names the file,
    ends on the fix, and carries no cut-off torch advice."""
    import pickle

    import torch

    torch.save({"x": torch.zeros(3, 1, 28, 28, dtype=torch.uint8), "y": torch.zeros(3, dtype=torch.int64)},
               tmp_path / "train.pt")
    whole = (tmp_path / "train.pt").read_bytes()
    content = {"truncated": whole[: len(whole) // 2], "garbage": b"hello world" * 10, "empty": b"",
               "pickle": pickle.dumps({"x": object()}, protocol=2)}[damage]
    (tmp_path / "train.pt").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_split(tmp_path, "train")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'train.pt'}: unreadable")
    assert text.endswith("delete it and run `dvc repro preprocess` to (re)build it.")
    assert "\n" not in text and len(text) < 400
    assert "weights_only" not in text and "If you are seeing this error" not in text  # torch's advice, cut short
    cause = text[text.index("(") + 1: text.rindex(")")]
    assert not cause.endswith((" is", " the", " a", "checkpoint file is")), cause  # not cut mid-sentence


def test_wrong_shape_says_what_was_expected(tmp_path):
    import torch

    torch.save({"x": torch.zeros(3, 28, 28, dtype=torch.uint8), "y": torch.zeros(3, dtype=torch.int64),
                "xb": torch.zeros(3, 28, 28, dtype=torch.uint8)}, tmp_path / "train.pt")
    with pytest.raises(DataError, match=r"x torch.uint8 \(3, 28, 28\).*expected x torch.uint8 \(N, C, H, W\).*"
                                        r"dvc repro preprocess` to \(re\)build it\.$"):
        load_split(tmp_path, "train")


def test_a_training_split_without_its_fixed_binarization_is_from_another_version(tmp_path):
    """train.pt written before the training split had "xb" (static binarization): rebuild, do not guess."""
    import torch

    torch.save({"x": torch.zeros(3, 1, 28, 28, dtype=torch.uint8), "y": torch.zeros(3, dtype=torch.int64)},
               tmp_path / "train.pt")
    with pytest.raises(DataError, match=r"train.pt: missing xb; it was written by another version - run `dvc repro "
                                        r"preprocess`"):
        load_split(tmp_path, "train")
