"""What a data set is called in words: its name, its class names, and what its images are called in prose.

MNIST's classes are the ten digits '0'..'9' (so is any custom set labelled 0-9 without a CLASSES file): its
images are "digits" and a class is named by its label alone, exactly as every text of the zoo was first written.
Any other set (Fashion-MNIST, a custom set with a CLASSES file) has "images" and classes named "2 (Pullover)".
The stages that only make sense on digits (SimGAN's synthetic set renders the digits from fonts) ask `digits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Naming:
    dataset: str
    classes: tuple[str, ...]

    @property
    def digits(self) -> bool:
        """The classes are the ten digits 0-9 (MNIST)."""
        return self.classes == DIGIT_CLASSES

    @property
    def noun(self) -> str:
        """What the images are called in prose: "digits", or "images" for any other data set."""
        return "digits" if self.digits else "images"

    @property
    def one(self) -> str:
        """One image in prose: "digit" or "image"."""
        return self.noun[:-1]

    def label(self, c: int | str) -> str:
        """Class c for a table: '3' on digits, '3 (Dress)' otherwise."""
        c = int(c)
        return str(c) if self.digits or not 0 <= c < len(self.classes) else f"{c} ({self.classes[c]})"

    def describe(self) -> str:
        """One clause naming the data set and its classes: "fashion-mnist, 10 classes: T-shirt/top, Trouser, ..."."""
        return f"{self.dataset}, {len(self.classes)} classes: {', '.join(self.classes)}"

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "classes": list(self.classes)}


def naming(meta: Mapping) -> Naming:
    """From preprocess's meta.json (or any dict with "dataset" and "classes")."""
    return Naming(str(meta["dataset"]), tuple(str(c) for c in meta["classes"]))


MNIST = Naming("mnist", DIGIT_CLASSES)  # what a metrics file written before data sets were named describes
