"""The Mistakes tab's filters over the mistakes file (``artifacts.mistakes``): which images, in which order."""

import numpy as np

from artifacts.mistakes import MistakeSet
from model import norm_short

ANY = "any"
ONLY_THIS = "only"  # the chosen model wrong, every other model right
ALL_WRONG = "all"  # every model wrong


def agreement_choices(norms: tuple[str, ...], norm: str) -> list[tuple[str, str]]:
    """Dropdown (label, value) pairs: how the other models did on the images ``norm`` gets wrong."""
    others = [other for other in norms if other != norm]
    me = norm_short(norm)
    choices = [(f"any ({me} wrong)", ANY)]
    choices += [(f"{norm_short(other)} right, {me} wrong", other) for other in others]
    if len(others) > 1:
        names = " and ".join(norm_short(other) for other in others)
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
