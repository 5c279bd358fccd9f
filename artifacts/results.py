"""``results.json`` (every model's metadata) and ``<norm>_history.json`` (per-epoch numbers).

The writers (the training export) and the readers (the export's curves, the app's
Training tab) side by side.
"""

import json
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json


def write_results(path: Path, results: dict[str, dict[str, Any]]) -> None:
    write_json(path, results)


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """{norm: metadata} from ``results.json``, or {} if it is absent or unreadable."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def write_history(path: Path, metadata: dict[str, Any], epochs: list[dict[str, float]]) -> None:
    write_json(path, {"config": metadata, "epochs": epochs})


def read_history(path: Path) -> list[dict[str, float]]:
    """The per-epoch records of one training run."""
    return json.loads(Path(path).read_text())["epochs"]
