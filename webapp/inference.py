"""Load the three models once and classify 32x32 pixels with each of them.

The loaded models are shared by every request. They are in eval mode with frozen
parameters and are only called under ``torch.inference_mode``, so nothing in them
changes after loading and concurrent requests cannot disturb one another.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import CLASSES, NORM_TITLES, NORMS, CheckpointError, load_checkpoint

CHECKPOINT_DIR_ENV = "CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = "checkpoints"


def default_checkpoint_dir() -> Path:
    return Path(os.environ.get(CHECKPOINT_DIR_ENV, DEFAULT_CHECKPOINT_DIR))


def regenerate_command(norm: str) -> str:
    return f"python -m training --norm {norm}"


@dataclass
class LoadedModel:
    norm: str
    network: nn.Module
    metadata: dict[str, Any]
    scale: torch.Tensor  # (1, 3, 1, 1): x * scale - shift == (x / 255 - mean) / std
    shift: torch.Tensor

    @property
    def title(self) -> str:
        return NORM_TITLES[self.norm]

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) or (N, H, W, 3) uint8 -> the (N, 3, H, W) float input the network was trained on."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels))
        if batch.ndim == 3:
            batch = batch.unsqueeze(0)
        return batch.permute(0, 3, 1, 2).float() * self.scale - self.shift


@dataclass
class ModelBank:
    """The models that loaded, and for each one that did not, why and how to regenerate it."""

    checkpoint_dir: Path
    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = CLASSES  # until a checkpoint is read, so the page can still be drawn

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(norm for norm in NORMS if norm in self.models)


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
    mean = torch.tensor(metadata["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(metadata["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return LoadedModel(metadata["norm"], network, metadata, scale=1 / (255 * std), shift=mean / std)


def load_bank(checkpoint_dir: Path | str | None = None) -> ModelBank:
    """Load ``{bn,gn,ln}.safetensors`` from ``checkpoint_dir``; a missing or broken one is recorded, not raised."""
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint_dir()
    bank = ModelBank(folder)
    for norm in NORMS:
        path = folder / f"{norm}.safetensors"
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
                f"{path} holds a {NORM_TITLES.get(loaded.norm, loaded.norm)} model, not {NORM_TITLES[norm]}. "
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
                    f"{folder / f'{norm}.safetensors'} was trained on different classes than the other models. "
                    f"Regenerate it with `{regenerate_command(norm)}`."
                )
    return bank


@dataclass
class Prediction:
    probabilities: dict[str, np.ndarray]  # norm -> (10,) float32, summing to 1
    seconds: dict[str, float]  # norm -> wall time of that model's forward pass

    def top(self, norm: str) -> int:
        return int(self.probabilities[norm].argmax())


def predict(bank: ModelBank, pixels: np.ndarray) -> Prediction:
    """Class probabilities of every loaded model for one (32, 32, 3) uint8 image."""
    probabilities, seconds = {}, {}
    with torch.inference_mode():
        for norm, loaded in bank.models.items():
            start = time.perf_counter()
            logits = loaded.network(loaded.normalize(pixels))
            probabilities[norm] = logits.softmax(dim=1)[0].numpy().astype(np.float32)
            seconds[norm] = time.perf_counter() - start
    return Prediction(probabilities, seconds)


def predict_batch(loaded: LoadedModel, pixels: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> (N, 10) probabilities from one model."""
    with torch.inference_mode():
        return loaded.network(loaded.normalize(pixels)).softmax(dim=1).numpy()
