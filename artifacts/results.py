"""``results.json`` (the models, and every norm over seeds) and ``<norm>_history.json`` (per-epoch numbers).

The writers (the training export, ``python -m training.summary``) and the readers (the
export's curves, the app's Training tab) side by side. ``results.json`` holds::

    {"models": {norm: metadata of the shipped seed-0 checkpoint},
     "over_seeds": {norm: {"seeds": [...], "runs": [{"seed", "test_accuracy", "train_accuracy"}, ...],
                           "test_accuracy": {"mean", "std", "n", "low", "high"}, "train_accuracy": {...}}},
     "differences": {"bn-gn": {"estimate", "low", "high", "degrees_of_freedom", "verdict"}, ...}}

Accuracies are fractions; ``low``/``high`` are the 95% interval of the mean over seeds (None for
one seed); differences are in the same units (mean of the first minus the second).
"""

import json
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json


def write_results(path: Path, models: dict[str, dict[str, Any]], over_seeds: dict[str, Any] | None = None,
                  differences: dict[str, Any] | None = None) -> None:
    write_json(path, {"models": models, "over_seeds": over_seeds or {}, "differences": differences or {}})


def _read(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """{norm: metadata} of the shipped models, or {} if the file is absent or unreadable."""
    models = _read(path).get("models", {})
    return models if isinstance(models, dict) else {}


def read_over_seeds(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(every norm over seeds, the pairwise differences); empty when there are none."""
    results = _read(path)
    over_seeds, differences = results.get("over_seeds", {}), results.get("differences", {})
    return (over_seeds if isinstance(over_seeds, dict) else {}), (differences if isinstance(differences, dict) else {})


def write_history(path: Path, metadata: dict[str, Any], epochs: list[dict[str, float]]) -> None:
    write_json(path, {"config": metadata, "epochs": epochs})


def read_history(path: Path) -> list[dict[str, float]]:
    """The per-epoch records of one training run."""
    return json.loads(Path(path).read_text())["epochs"]
