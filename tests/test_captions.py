"""The captions set for StackGAN (genzoo.data.captions): deterministic captions that round-trip and name their
rows' attributes, images that match their colour and stroke, and the loader's checks."""

from __future__ import annotations

import pytest
import torch
from helpers import captions_batch, digit_bars

from genzoo.data import captions as cap
from genzoo.data.derived import stroke
from genzoo.engine.errors import DataError


def test_captions_are_deterministic_for_a_seed_and_differ_across_seeds():
    a, b, c = captions_batch(seed=1), captions_batch(seed=1), captions_batch(seed=2)
    assert set(a) == set(cap.KEYS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["tokens"], c["tokens"])
    cap.check_captions(a, "built")  # what build makes passes the loader's checks


def test_every_template_round_trips_and_names_the_rows_attributes():
    for t in range(len(cap.TEMPLATES)):
        for digit, colour, kind in ((7, 0, 2), (0, 2, 0), (3, 1, 1)):
            text = cap.caption(digit, colour, kind, t)
            tokens = cap.tokenize(text)
            assert tokens.shape == (cap.MAX_TOKENS,) and tokens.dtype == torch.int64
            assert cap.caption_text(tokens) == text
            vectorised = cap.captions_tokens(torch.tensor([digit]), torch.tensor([colour]), torch.tensor([kind]),
                                             torch.tensor([t]))
            assert torch.equal(vectorised[0], tokens)
    data = captions_batch(60)
    assert len({tuple(r) for r in (data["tokens"] > 0).int().tolist()}) > 1  # several templates drawn
    for row in range(60):
        words = cap.caption_text(data["tokens"][row]).split()
        assert cap.DIGITS[data["y"][row]] in words and cap.COLOURS[data["colour"][row]] in words
        assert cap.STROKES[data["stroke"][row]] in words


def test_unknown_words_and_overlong_captions_are_refused():
    with pytest.raises(DataError, match="unknown word"):
        cap.tokenize("a purple seven")
    with pytest.raises(DataError, match="unknown word"):
        cap.tokenize("<pad> seven")
    with pytest.raises(DataError, match="at most"):
        cap.tokenize("a " * (cap.MAX_TOKENS + 1))


def test_images_match_their_colour_and_stroke():
    base, data = digit_bars(30), captions_batch(30)
    assert data["x"].shape == (30, 3, 28, 28) and data["x"].dtype == torch.uint8
    assert set(data["colour"].tolist()) == {0, 1, 2} and set(data["stroke"].tolist()) == {0, 1, 2}
    for i in range(30):
        c = data["colour"][i]
        grey = stroke(base["x"][i:i + 1], data["stroke"][i:i + 1])[0]  # (1, 28, 28)
        assert torch.equal(data["x"][i, c], grey[0])
        others = [k for k in range(3) if k != c]
        assert (data["x"][i, others] == 0).all()


def test_load_captions_validates(tmp_path):
    data = captions_batch(10)
    torch.save(data, tmp_path / "val.pt")
    loaded = cap.load_captions(tmp_path, "val")
    assert torch.equal(loaded["tokens"], data["tokens"])
    with pytest.raises(DataError, match="dvc repro derive"):
        cap.load_captions(tmp_path, "test")  # missing
    torch.save({k: v for k, v in data.items() if k != "tokens"}, tmp_path / "train.pt")
    with pytest.raises(DataError, match="missing tokens"):
        cap.load_captions(tmp_path, "train")
    torch.save({**data, "tokens": data["tokens"] + 100}, tmp_path / "train.pt")
    with pytest.raises(DataError, match="vocabulary"):
        cap.load_captions(tmp_path, "train")


def test_mnist_captions_read_exactly_as_before():
    """The digits' words are VOCAB itself: MNIST's captions (and so data/captions) are unchanged."""
    assert cap.vocabulary([str(i) for i in range(10)]) is cap.VOCAB and cap.vocabulary(None) is cap.VOCAB
    assert [cap.caption(7, 0, 2, t) for t in range(4)] == [
        "a thick red seven", "a red seven with thick strokes", "the digit seven in red , thick",
        "seven , written thick in red"]


def test_another_data_set_reads_the_same_tokens_in_its_class_names():
    from tiny_data import FASHION_CLASSES

    words = cap.vocabulary(FASHION_CLASSES)
    assert len(words) == len(cap.VOCAB) and words[cap.PAD] == "<pad>"
    assert [words[i] for i in cap.DIGIT_IDS] == ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                                                  "shirt", "sneaker", "bag", "ankle-boot"]
    assert [words[i] for i in cap.COLOUR_IDS] == list(cap.COLOURS)  # the other blocks stay where they were
    assert [cap.caption(9, 1, 0, t, words) for t in range(4)] == [
        "a thin green ankle-boot", "a green ankle-boot with thin strokes", "the item ankle-boot in green , thin",
        "ankle-boot , drawn thin in green"]
    data = captions_batch(20)  # the tokens are the data set's indices: any vocabulary reads them
    for row in range(20):
        text = cap.caption_text(data["tokens"][row], words)
        assert words[cap.DIGIT_IDS[data["y"][row]]] in text.split() and "digit" not in text.split()
        assert torch.equal(cap.tokenize(text, words), data["tokens"][row])
    # fewer classes: spare slots; more than ten, or a name that is a caption word: no vocabulary
    assert cap.vocabulary(["Cat", "Dog"])[cap.DIGIT_IDS[0]:cap.DIGIT_IDS[0] + 3] == ("cat", "dog", "class-2")
    assert cap.not_applicable([str(i) for i in range(11)]) and cap.not_applicable(FASHION_CLASSES) is None
    with pytest.raises(DataError, match="at most 10 classes"):
        cap.vocabulary([f"c{i}" for i in range(11)])
    with pytest.raises(DataError, match="repeat a caption word"):
        cap.vocabulary(["Red", "Blue"])
