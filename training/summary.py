"""python -m training.summary: every norm over seeds, and the differences between norms, into results.json.

Reads only the checkpoints' metadata (no dataset): the shipped seed-0 models at the top
of the folder and the other seeds under ``seeds/<seed>/``. ``python -m training`` ends
with it; run it alone after copying in seeds trained elsewhere.
"""

import argparse
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

from artifacts.folder import DEFAULT_CHECKPOINT_DIR, CheckpointFolder
from artifacts.results import write_results
from artifacts.weights import CheckpointError, read_metadata
from model import NORMS
from training.config import ConfigError, TrainConfig
from training.statistics import mean_interval, summarize, verdict, welch_interval


def collect(folder: CheckpointFolder) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(the shipped models' metadata, every norm's runs over seeds: one metadata dict per seed)."""
    models: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {norm: [] for norm in NORMS}
    for seed, seed_folder in folder.seed_folders().items():
        for norm in NORMS:
            path = seed_folder.weights(norm)
            if not path.exists():
                continue
            try:
                metadata = read_metadata(path)
            except CheckpointError as error:
                print(f"warning: leaving {path} out: {error}")
                continue
            if seed == 0:
                models[norm] = metadata
            shipped = models.get(norm, metadata)
            try:
                same = TrainConfig.from_record(shipped).describes(metadata)
            except (ConfigError, KeyError) as error:
                print(f"warning: leaving {path} out: the shipped {norm}'s metadata names no valid training settings "
                      f"({error})")
                continue
            # The length and the training images too, which a config's description leaves aside.
            if not same or any(metadata.get(key) != shipped.get(key) for key in ("epochs", "train_images")):
                print(f"warning: leaving {path} out: trained with other settings than the shipped {norm}")
                continue
            runs[norm].append(metadata)
    return models, {norm: found for norm, found in runs.items() if found}


def over(values: list[float]) -> dict[str, Any]:
    """Mean, std and n of ``values``, with the 95% interval of the mean (None for one seed)."""
    interval = mean_interval(values)
    return {**vars(summarize(values)), "low": interval[0] if interval else None,
            "high": interval[1] if interval else None}


def over_seeds(runs: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and spread per norm, and Welch intervals for every pair of norms (test accuracy)."""
    summary = {}
    for norm, found in runs.items():
        summary[norm] = {
            "seeds": [m["seed"] for m in found],
            "runs": [{"seed": m["seed"], "test_accuracy": m["test_accuracy"], "train_accuracy": m["train_accuracy"]}
                     for m in found],
            **{key: over([m[key] for m in found]) for key in ("test_accuracy", "train_accuracy")},
        }
    differences = {}
    for first, second in combinations([norm for norm in NORMS if norm in runs], 2):
        a = [m["test_accuracy"] for m in runs[first]]
        b = [m["test_accuracy"] for m in runs[second]]
        difference = welch_interval(a, b)
        differences[f"{first}-{second}"] = {
            **vars(difference),
            "verdict": verdict(NORMS[first].short, NORMS[second].short, difference, min(len(a), len(b))),
        }
    return summary, differences


def write_summary(folder: CheckpointFolder) -> dict[str, Any]:
    """Rebuild ``results.json`` from the folder's checkpoints; return what was written."""
    models, runs = collect(folder)
    summary, differences = over_seeds(runs)
    write_results(folder.results, models, summary, differences)
    return {"models": models, "over_seeds": summary, "differences": differences}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.summary", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR,
                        help="the checkpoint folder (default: checkpoints)")
    args = parser.parse_args(argv)
    written = write_summary(CheckpointFolder(args.checkpoint_dir))
    if not written["models"]:
        print(f"error: no checkpoints in {args.checkpoint_dir}; train them with `python -m training`", file=sys.stderr)
        return 2
    for norm, summary in written["over_seeds"].items():
        test = summary["test_accuracy"]
        print(f"{NORMS[norm].title}: test {100 * test['mean']:.2f} ± {100 * test['std']:.2f}% over seeds "
              f"{summary['seeds']}")
    for difference in written["differences"].values():
        print(difference["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
