"""Load the three models once and classify 32x32 pixels with each of them.

The loaded models are shared by every request. They are in eval mode with frozen
parameters and are only called under ``torch.inference_mode``, so nothing in them
changes after loading and concurrent requests cannot disturb one another.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artifacts.folder import CheckpointFolder, default_checkpoint_dir
from artifacts.weights import CheckpointError, load_checkpoint
from model import CLASSES, NORMS, norm_title, pixels_to_input


def regenerate_command(norm: str) -> str:
    return f"python -m training --norm {norm}"


@dataclass
class LoadedModel:
    norm: str
    network: nn.Module
    metadata: dict[str, Any]

    @property
    def title(self) -> str:
        return NORMS[self.norm].title

    def input(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) or (N, H, W, 3) uint8 -> the (N, 3, H, W) float input the network was trained on."""
        return pixels_to_input(pixels, tuple(self.metadata["mean"]), tuple(self.metadata["std"]))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 32, 32, 3) uint8 -> (N, 10) class probabilities."""
        with torch.inference_mode():
            return self.network(self.input(pixels)).softmax(dim=1).numpy()


@dataclass
class ModelBank:
    """The models that loaded, and for each one that did not, why and how to regenerate it."""

    folder: CheckpointFolder
    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = CLASSES  # until a checkpoint is read, so the page can still be drawn

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(norm for norm in NORMS if norm in self.models)

    def predict(self, pixels: np.ndarray) -> "Prediction":
        """Class probabilities of every loaded model for one (32, 32, 3) uint8 image."""
        probabilities, seconds = {}, {}
        with torch.inference_mode():
            for norm, loaded in self.models.items():
                start = time.perf_counter()
                logits = loaded.network(loaded.input(pixels))
                probabilities[norm] = logits.softmax(dim=1)[0].numpy().astype(np.float32)
                seconds[norm] = time.perf_counter() - start
        return Prediction(probabilities, seconds)


def load_model(path: Path, device: str = "cpu") -> LoadedModel:
    network, metadata = load_checkpoint(path, device=device)
    for parameter in network.parameters():
        # Grad-CAM asks autograd for the gradient of one activation only; frozen weights
        # mean no request ever writes a .grad into the shared model.
        parameter.requires_grad_(False)
    with torch.inference_mode():
        # The first calls of a network are several times slower (allocator and kernel set-up); pay that now.
        for _ in range(2):
            network(torch.zeros(1, 3, 32, 32))
    return LoadedModel(metadata["norm"], network, metadata)


def load_bank(checkpoint_dir: Path | str | None = None) -> ModelBank:
    """Load ``{bn,gn,ln}.safetensors`` from ``checkpoint_dir``; a missing or broken one is recorded, not raised."""
    folder = CheckpointFolder(checkpoint_dir if checkpoint_dir is not None else default_checkpoint_dir())
    bank = ModelBank(folder)
    for norm in NORMS:
        path = folder.weights(norm)
        try:
            loaded = load_model(path)
        except CheckpointError as error:
            reason = str(error).removesuffix("; regenerate it").rstrip(".")
            bank.problems[norm] = f"{reason}. Regenerate it with `{regenerate_command(norm)}`."
            continue
        except Exception as error:  # noqa: BLE001 - whatever is wrong with one file, the other models still serve
            bank.problems[norm] = (
                f"{path} could not be loaded ({type(error).__name__}: {error}). "
                f"Regenerate it with `{regenerate_command(norm)}`."
            )
            continue
        if loaded.norm != norm:
            bank.problems[norm] = (
                f"{path} holds a {norm_title(loaded.norm)} model, not {NORMS[norm].title}. "
                f"Regenerate it with `{regenerate_command(norm)}`."
            )
            continue
        bank.models[norm] = loaded
    if bank.models:
        first = next(iter(bank.models.values()))
        bank.classes = tuple(first.metadata["classes"])
        for norm, loaded in list(bank.models.items()):
            if tuple(loaded.metadata["classes"]) != bank.classes:
                del bank.models[norm]
                bank.problems[norm] = (
                    f"{folder.weights(norm)} was trained on different classes than the other models. "
                    f"Regenerate it with `{regenerate_command(norm)}`."
                )
    return bank


@dataclass
class Prediction:
    probabilities: dict[str, np.ndarray]  # norm -> (10,) float32, summing to 1
    seconds: dict[str, float]  # norm -> wall time of that model's forward pass

    def top(self, norm: str) -> int:
        return int(self.probabilities[norm].argmax())
