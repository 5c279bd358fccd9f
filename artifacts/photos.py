"""``photos.json``: what the shipped models answer on a folder of real photos, per class.

Written by ``python benchmarks/photos.py FOLDER --output checkpoints/photos.json`` (FOLDER
holds one ``<class>/`` subfolder of photos per CIFAR-10 class) and read by the model cards.
It holds::

    {"command": "python benchmarks/photos.py PATH ...", "photos": 40, "fit": "crop", "resampling": "lanczos",
     "views": "single",
     "classes": ["airplane", ...],  # the classes the folder has photos of
     "models": {norm: {"correct": 26, "total": 40, "accuracy": 0.65,
                       "per_class": {class: {"correct": 3, "total": 5}}}},
     "other_views": {"flip": {norm: {...as in "models"}}, ...}}  # only when several view modes were measured

``fit`` and ``resampling`` name how each photo was brought to 32x32 (``webapp.preprocess``; a file
without ``resampling`` was written before it was recorded, with the app's Lanczos). ``views`` names the
app's multi-view setting the numbers in ``models`` were measured with (``single``:
the one 32x32 input, the app's default); ``other_views`` holds the other modes measured in the same run.
Accuracies are fractions. The writer rewrites the file atomically; the reader returns {}
when the file is absent or unreadable, so a card without photo numbers says so.
"""

import json
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json


def write_photo_results(path: Path, results: dict[str, Any]) -> None:
    write_json(path, results)


def read_photo_results(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) and isinstance(results.get("models"), dict) else {}
