"""``trials.json``: every training run behind a choice of setting, each with the command that made it.

Generated from the search's journal (``checkpoints/search/journal.log``, ``training.search.record``),
which is the one record of trials: never edited by hand. One record per run made by hand: the
command as typed (folders as placeholders), where it ran, and per model its settings and
accuracies, with the validation accuracy when the run held the validation split out. Choices
are made on that; runs recorded before the split existed report test accuracy only, and the
README says which choices rest on them. Then one record per trial of the search (``study``,
``trial``, ``state``, ``value``, the ``commands`` that repeat it, its ``params`` and ``models``).
The writer rewrites the whole file atomically and the reader returns the records.
"""

import json
import math
import shlex
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json

NOTE = ("Every training run behind a choice of setting, generated from checkpoints/search/journal.log (the record "
        "itself; `python -m training.search --record` prints it). Settings are chosen on validation_accuracy (the "
        "fixed validation split held out); records without it were compared on test accuracy, before the split "
        "existed.")
# Per model: the settings and the numbers a trial is compared on.
MODEL_KEYS = (
    "arch", "norm", "recipe", "seed", "epochs", "batch_size", "lr", "crop_padding", "weight_decay",
    "label_smoothing", "gn_groups", "schedule", "warmup_fraction", "flips", "crop_scale", "crop_ratio",
    "color_jitter", "ema_decay", "dirac_init", "whiten_init", "zero_residual", "muon_lr",
    "train_images", "validation_split", "validation_accuracy",
    "test_accuracy", "train_accuracy", "train_seconds",
)
# Options whose value is a folder on the machine that ran it: recorded as placeholders.
FOLDER_OPTIONS = ("--data-dir", "--output-dir", "--state-dir")


class TrialsError(RuntimeError):
    """The trials file exists but is not one this code wrote."""


def command_line(program: str, argv: list[str]) -> str:
    """``program`` and its arguments as one shell line, every folder option's value replaced by PATH."""
    words: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            words.append("PATH")
            hide_next = False
        elif word in FOLDER_OPTIONS:
            words.append(word)
            hide_next = True
        elif word.split("=", 1)[0] in FOLDER_OPTIONS:
            words.append(word.split("=", 1)[0] + "=PATH")
        else:
            words.append(word)
    return " ".join([program, shlex.join(words)]).strip()


def model_record(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a trial keeps of one checkpoint's metadata."""
    return {key: metadata[key] for key in MODEL_KEYS if key in metadata}


def _same(first: Any, second: Any) -> bool:
    """Equal, floats as the configs round them (weight decay to 4 digits, rates to 6 decimals): a factor read back
    from a rounded rate trains the same run."""
    if isinstance(first, float) and isinstance(second, float):
        return math.isclose(first, second, rel_tol=2e-4)
    return first == second


def changed_settings(params: dict[str, Any], reference: dict[str, Any]) -> str:
    """A search trial's choices that differ from ``reference`` (the shipped recipe), in a line; the seed is not one."""
    changed = [f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
               for key, value in params.items() if key != "seed" and not _same(reference.get(key), value)]
    return ", ".join(changed) or "the shipped recipe"


def read_trials(path: Path) -> list[dict[str, Any]]:
    """Every recorded trial, oldest first; none when the file does not exist."""
    try:
        saved = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise TrialsError(f"{path} is not a readable trials file ({error}); fix or move it") from error
    if not isinstance(saved, dict) or not isinstance(saved.get("trials"), list):
        raise TrialsError(f"{path} is not a trials file (no list of trials); fix or move it")
    return saved["trials"]


def trial_record(command: str, device: str, models: dict[str, dict[str, Any]], note: str | None = None
                 ) -> dict[str, Any]:
    """One run made by hand as the file keeps it (``models``: checkpoint metadata by name)."""
    return {"command": command, "device": device, **({"note": note} if note else {}),
            "models": {name: model_record(metadata) for name, metadata in models.items()}}


def write_trials(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the whole file: every record, in order."""
    write_json(path, {"note": NOTE, "trials": records})
