"""The test images the models get wrong, read from ``mistakes.npz``, and the gallery's filters.

The file holds every test image that at least one model misclassifies, with each model's
probabilities, so all filters run on it without the dataset.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import NORM_TITLES
from model.image_sheet import decode_sheet

ANY = "any"
ONLY_THIS = "only"  # the chosen model wrong, every other model right
ALL_WRONG = "all"  # every model wrong
SHORT_NAMES: dict[str, str] = {"bn": "BN", "gn": "GN", "ln": "LN"}


class MistakesError(RuntimeError):
    """mistakes.npz is missing or unreadable; the message says how to regenerate it."""


@dataclass
class MistakeSet:
    images: np.ndarray  # (M, 32, 32, 3) uint8
    labels: np.ndarray  # (M,) int
    probabilities: np.ndarray  # (M, K, 10) float32, models in the order of ``norms``
    test_index: np.ndarray  # (M,) position in the CIFAR-10 test set
    norms: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        self.predicted = self.probabilities.argmax(axis=2)  # (M, K)
        self.correct = self.predicted == self.labels[:, None]  # (M, K)

    def __len__(self) -> int:
        return len(self.labels)

    def column(self, norm: str) -> int:
        if norm not in self.norms:
            raise ValueError(f"no {NORM_TITLES.get(norm, norm)} predictions in the mistakes file")
        return self.norms.index(norm)


def _images(data: np.lib.npyio.NpzFile) -> np.ndarray:
    if "image_sheet" in data.files:
        return decode_sheet(data["image_sheet"], len(data["labels"]))
    return np.asarray(data["images"], dtype=np.uint8)  # files exported before the sheet existed


def load_mistakes(path: Path | str) -> MistakeSet:
    path = Path(path)
    hint = "Regenerate it with `python -m training` (it is written after the three models are trained)."
    if not path.is_file():
        raise MistakesError(f"{path} does not exist. {hint}")
    try:
        with np.load(path, allow_pickle=False) as data:
            mistakes = MistakeSet(
                images=_images(data),
                labels=np.asarray(data["labels"], dtype=np.int64),
                probabilities=np.asarray(data["probabilities"], dtype=np.float32),
                test_index=np.asarray(data["test_index"], dtype=np.int64),
                norms=tuple(str(n) for n in data["norms"]),
                classes=tuple(str(c) for c in data["classes"]),
            )
    except (OSError, KeyError, ValueError) as error:
        raise MistakesError(f"{path} is not a readable mistakes file ({error}). {hint}") from error
    count, models = len(mistakes.labels), len(mistakes.norms)
    if mistakes.images.shape[1:] != (32, 32, 3) or len(mistakes.images) != count or (
        mistakes.probabilities.shape != (count, models, len(mistakes.classes))
    ):
        raise MistakesError(f"{path} has inconsistent array shapes. {hint}")
    return mistakes


def agreement_choices(norms: tuple[str, ...], norm: str) -> list[tuple[str, str]]:
    """Dropdown (label, value) pairs: how the other models did on the images ``norm`` gets wrong."""
    others = [other for other in norms if other != norm]
    me = SHORT_NAMES.get(norm, norm)
    choices = [(f"any ({me} wrong)", ANY)]
    choices += [(f"{SHORT_NAMES.get(other, other)} right, {me} wrong", other) for other in others]
    if len(others) > 1:
        names = " and ".join(SHORT_NAMES.get(other, other) for other in others)
        choices.append((f"{names} right, only {me} wrong", ONLY_THIS))
    if others:
        choices.append(("all models wrong", ALL_WRONG))
    return choices


def select(
    mistakes: MistakeSet,
    norm: str,
    true_class: int | None = None,
    predicted_class: int | None = None,
    others: str = ANY,
) -> np.ndarray:
    """Row indices of the images ``norm`` gets wrong that pass the filters, most confident mistake first.

    ``others`` is ``ANY``, the name of another model that must get the image right,
    ``ONLY_THIS`` (all other models right) or ``ALL_WRONG`` (every model wrong).
    """
    column = mistakes.column(norm)
    keep = ~mistakes.correct[:, column]
    if true_class is not None:
        keep &= mistakes.labels == true_class
    if predicted_class is not None:
        keep &= mistakes.predicted[:, column] == predicted_class
    other_columns = [i for i, other in enumerate(mistakes.norms) if other != norm]
    if others == ONLY_THIS:
        keep &= mistakes.correct[:, other_columns].all(axis=1)
    elif others == ALL_WRONG:
        keep &= ~mistakes.correct.any(axis=1)
    elif others != ANY:
        keep &= mistakes.correct[:, mistakes.column(others)]
    rows = np.flatnonzero(keep)
    confidence = mistakes.probabilities[rows, column].max(axis=1)
    return rows[np.argsort(-confidence, kind="stable")]


def caption(mistakes: MistakeSet, row: int, norm: str) -> str:
    """``true → predicted (confidence)`` for one image and one model."""
    column = mistakes.column(norm)
    predicted = int(mistakes.predicted[row, column])
    confidence = float(mistakes.probabilities[row, column, predicted])
    return f"{mistakes.classes[mistakes.labels[row]]} → {mistakes.classes[predicted]} ({confidence:.0%})"
