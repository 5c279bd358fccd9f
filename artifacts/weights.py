"""``<norm>.safetensors``: weights as safetensors (no pickle), with the metadata the app and README need.

The writer and the reader of the format, side by side.
"""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from artifacts.atomic import atomic_write
from model import build_model, count_parameters

# Keys every checkpoint carries; values are JSON-encoded, as safetensors metadata is str -> str.
METADATA_KEYS = (
    "arch", "norm", "parameters", "epochs", "train_accuracy", "test_accuracy",
    "mean", "std", "classes", "seed",
)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not match the network it names."""


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    encoded = {key: json.dumps(value) for key, value in metadata.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=encoded))


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint, without loading its weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
        # Sorted: safetensors hands the metadata back in no fixed order, and reports written
        # from it should not change from one export to the next.
        return {key: json.loads(raw[key]) for key in sorted(raw)}
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} does not exist") from error
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({error})") from error


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the network a checkpoint names, load its weights, and return it in eval mode.

    Refuses, with a ``CheckpointError`` saying what differs, a file whose metadata
    or tensors do not match the network.
    """
    path = Path(path)
    metadata = read_metadata(path)
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"{path} lacks the metadata {', '.join(missing)}; regenerate it")
    try:
        # Checkpoints written before the group count was a setting used the architecture's.
        model = build_model(metadata["arch"], metadata["norm"], metadata.get("gn_groups"))
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    if count_parameters(model) != metadata["parameters"]:
        raise CheckpointError(
            f"{path} says {metadata['parameters']} parameters, but the {metadata['arch']}/"
            f"{metadata['norm']} network has {count_parameters(model)}: it was made by a "
            "different version of the network; regenerate it"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({error})") from error
    expected = model.state_dict()
    mismatched = sorted(set(expected) ^ set(tensors)) + [
        name for name in expected.keys() & tensors.keys() if expected[name].shape != tensors[name].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{path} does not match the {metadata['arch']}/{metadata['norm']} network "
            f"(differs at {', '.join(mismatched[:5])}); regenerate it"
        )
    model.load_state_dict(tensors)
    return model.to(device).eval(), metadata
