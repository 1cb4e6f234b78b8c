"""The `captions` set (StackGAN's text-to-image data, DESIGN.md §3): coloured digits, each with a caption.

Like the `multidomain` set of genzoo.data.derived (same `colourize`, `stroke`, COLOURS, STROKES), but EVERY row
carries both attributes and a short caption naming the digit, its colour and its stroke, written with one of a
few templates ("a thick red seven", "a red seven with thick strokes", "the digit seven in red , thick",
"seven , written thick in red"): the words come in different orders, with filler words around them, so a text
encoder has to find the three content words instead of reading fixed positions.

Keys of one split: "x" uint8 (N,3,28,28), "y", "colour" (0 red, 1 green, 2 blue), "stroke" (0 thin, 1 regular,
2 thick) int64 (N,), "tokens" int64 (N, MAX_TOKENS): word indices into VOCAB, padded with 0 at the end.
`build_captions` is a pure function of the base split and a torch.Generator (the derive stage seeds it with
derived_seed(seed, "derived:captions:<split>")), so the files are byte-identical on every run.

VOCAB keeps each attribute's words in one contiguous block in the attribute's label order (DIGIT_IDS,
COLOUR_IDS, STROKE_IDS): a model can turn a caption into a mismatched one by shifting a content word within its
block, on the device, without decoding text.

Another data set (Fashion-MNIST) keeps the same tokens (indices) and blocks, read in its own words:
`vocabulary(classes)` puts its class names in the class block ("a thick red sneaker") and says "item" and "drawn"
for the fillers "digit" and "written" ("the item sneaker in red , thick"); MNIST's words are VOCAB itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from genzoo.data.loading import read_split_file, require_tensors
from genzoo.data.naming import DIGIT_CLASSES
from genzoo.data.styles import COLOURS, STROKES, colourize, stroke
from genzoo.engine.errors import DataError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FILLERS = ("a", "the", "digit", "in", "with", "strokes", "written", ",")
VOCAB: tuple[str, ...] = ("<pad>", *FILLERS, *DIGITS, *COLOURS, *STROKES)  # index 0 = padding
PAD = 0
_INDEX = {word: i for i, word in enumerate(VOCAB)}
DIGIT_IDS = tuple(_INDEX[w] for w in DIGITS)  # contiguous blocks, in label order
COLOUR_IDS = tuple(_INDEX[w] for w in COLOURS)
STROKE_IDS = tuple(_INDEX[w] for w in STROKES)
TEMPLATES = (
    "a {stroke} {colour} {digit}",
    "a {colour} {digit} with {stroke} strokes",
    "the digit {digit} in {colour} , {stroke}",
    "{digit} , written {stroke} in {colour}",
)
MAX_TOKENS = 8  # the longest template has 7 words
CLASS_SLOTS = len(DIGITS)  # the class block: one word per label, so at most 10 classes have captions
GENERIC_FILLERS = {"digit": "item", "written": "drawn"}  # the fillers' words on a data set of anything but digits
KEYS = ("x", "y", "colour", "stroke", "tokens")
_HINT = "run `dvc repro derive` to (re)build it"


def class_word(name: str) -> str:
    """A class name as one caption word: lower case, spaces as '-' ("Ankle boot" -> "ankle-boot")."""
    return "-".join(name.lower().split())


def not_applicable(classes: Sequence[str]) -> str | None:
    """Why a data set with these classes gets no captions set (None: it does): the class block has 10 words."""
    if len(classes) > CLASS_SLOTS:
        return (f"the captions name one of at most {CLASS_SLOTS} classes (one word each in the vocabulary's class "
                f"block), and this data set has {len(classes)}")
    return None


def vocabulary(classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """VOCAB in a data set's words: the same length and blocks (so the same tokens), its class names in the class
    block and GENERIC_FILLERS for "digit" and "written" unless its classes are the digits (then VOCAB itself)."""
    if classes is None or tuple(classes) == DIGIT_CLASSES:
        return VOCAB
    if (why := not_applicable(classes)) is not None:
        raise DataError(f"no caption vocabulary: {why}.")
    names = [class_word(c) for c in classes] + [f"class-{k}" for k in range(len(classes), CLASS_SLOTS)]
    vocab = ("<pad>", *(GENERIC_FILLERS.get(w, w) for w in FILLERS), *names, *COLOURS, *STROKES)
    if len(set(vocab)) != len(vocab):
        raise DataError(f"class names {list(classes)} repeat a caption word ({' '.join(vocab[1:])}); rename them.")
    return vocab


def tokenize(text: str, vocab: Sequence[str] = VOCAB) -> torch.Tensor:
    """'a thick red seven' -> LongTensor (MAX_TOKENS,) of indices into `vocab` (default VOCAB, MNIST's words),
    padded with 0; DataError on an unknown word or a caption longer than MAX_TOKENS words."""
    index = {word: i for i, word in enumerate(vocab)}
    words = text.lower().split()
    unknown = [w for w in words if w not in index or w == vocab[PAD]]
    if unknown:
        raise DataError(f"caption {text!r}: unknown word(s) {', '.join(map(repr, unknown))}; the vocabulary is "
                        f"{' '.join(vocab[1:])}.")
    if len(words) > MAX_TOKENS:
        raise DataError(f"caption {text!r}: {len(words)} words, at most {MAX_TOKENS} fit.")
    out = torch.zeros(MAX_TOKENS, dtype=torch.int64)
    out[:len(words)] = torch.tensor([index[w] for w in words], dtype=torch.int64)
    return out


def caption_text(tokens: torch.Tensor, vocab: Sequence[str] = VOCAB) -> str:
    """(MAX_TOKENS,) indices -> the caption's words in `vocab` (default VOCAB: MNIST's), joined by spaces (padding
    dropped)."""
    return " ".join(vocab[i] for i in tokens.tolist() if i != PAD)


def caption(digit: int, colour: int, kind: int, template: int = 0, vocab: Sequence[str] = VOCAB) -> str:
    """The caption of label `digit` (a class of any data set) in colour and stroke `kind`, in `vocab`'s words."""
    tokens = captions_tokens(torch.tensor([digit]), torch.tensor([colour]), torch.tensor([kind]),
                             torch.tensor([template]))
    return caption_text(tokens[0], vocab)


def _template_table() -> torch.Tensor:
    """(T, MAX_TOKENS) word ids of the templates, with the slots -1 digit, -2 colour, -3 stroke."""
    slots = {"{digit}": -1, "{colour}": -2, "{stroke}": -3}
    table = torch.zeros(len(TEMPLATES), MAX_TOKENS, dtype=torch.int64)
    for t, template in enumerate(TEMPLATES):
        words = template.split()
        table[t, :len(words)] = torch.tensor([slots.get(w, _INDEX.get(w, PAD)) for w in words])
    return table


def captions_tokens(y: torch.Tensor, colour: torch.Tensor, kind: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Vectorised tokenize(caption(...)) for N rows -> int64 (N, MAX_TOKENS)."""
    rows = _template_table()[template]  # (N, MAX_TOKENS)
    fill = {-1: torch.tensor(DIGIT_IDS)[y], -2: torch.tensor(COLOUR_IDS)[colour], -3: torch.tensor(STROKE_IDS)[kind]}
    for slot, ids in fill.items():
        rows = torch.where(rows == slot, ids[:, None], rows)
    return rows.contiguous()


def build_captions(split_dict: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One split of the captions set from a base split {"x": uint8 (N,1,H,W), "y": int64 (N,)} (CPU)."""
    x, y = split_dict["x"].cpu(), split_dict["y"].cpu().long()
    n = len(x)
    colour = torch.randint(len(COLOURS), (n,), generator=gen)
    kind = torch.randint(len(STROKES), (n,), generator=gen)
    template = torch.randint(len(TEMPLATES), (n,), generator=gen)
    images = colourize(stroke(x, kind), colour)  # (N, 3, H, W)
    return {"x": images, "y": y.clone(), "colour": colour, "stroke": kind,
            "tokens": captions_tokens(y, colour, kind, template)}


def check_captions(data: object, where: str) -> None:
    """DataError unless `data` has exactly the keys, dtypes, shapes and value ranges `build_captions` makes."""
    require_tensors(data, KEYS, where, _HINT)
    n = len(data["x"])
    x, tokens = data["x"], data["tokens"]
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"{where}: unexpected tensor x {x.dtype} {tuple(x.shape)}; {_HINT}.")
    if tokens.dtype != torch.int64 or tuple(tokens.shape) != (n, MAX_TOKENS):
        raise DataError(f"{where}: unexpected tensor tokens {tokens.dtype} {tuple(tokens.shape)} (N = {n}); {_HINT}.")
    for key, top in (("y", 10), ("colour", len(COLOURS)), ("stroke", len(STROKES))):
        t = data[key]
        if t.dtype != torch.int64 or tuple(t.shape) != (n,):
            raise DataError(f"{where}: unexpected tensor {key} {t.dtype} {tuple(t.shape)} (N = {n}); {_HINT}.")
        if n and (t.min() < 0 or t.max() >= top):
            raise DataError(f"{where}: {key} outside 0..{top - 1}; {_HINT}.")
    if n and (tokens.min() < 0 or tokens.max() >= len(VOCAB)):
        raise DataError(f"{where}: tokens outside the vocabulary (0..{len(VOCAB) - 1}); {_HINT}.")


def load_captions(folder: Path, split: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """folder/<split>.pt (the dict `build_captions` made), validated, on `device`."""
    return read_split_file(folder, split, _HINT, device, check_captions)
