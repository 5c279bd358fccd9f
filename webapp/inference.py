"""Load the three models once and classify 32x32 pixels with each of them.

The models come from the checkpoint folder (``{bn,gn,ln}.safetensors``), or, with ``models``,
from Hub model repositories ``OWNER/PREFIX-{bn,gn,ln}`` or a local folder in that layout
(``FOLDER/{bn,gn,ln}/``, as ``python -m training.publish --output-dir`` writes it; see
``model.hub``). Either way a missing or broken model is recorded with what to do, and the
others serve. The loaded models are shared by every request. They are in eval mode with frozen
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
from artifacts.weights import METADATA_KEYS, CheckpointError, load_checkpoint
from model import CLASSES, NORMS, norm_title, pixels_to_input
from model.hub import HubModelError, NormLabNet, model_location


def regenerate_command(norm: str) -> str:
    return f"python -m training --norm {norm}"


PUBLISH_ADVICE = "Publish the models again with `python -m training.publish OWNER/PREFIX`."


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
        """Class probabilities of every loaded model for one (32, 32, 3) uint8 image, or averaged over the
        views of one image, (V, 32, 32, 3) (``webapp.preprocess.model_views``)."""
        probabilities, seconds = {}, {}
        with torch.inference_mode():
            for norm, loaded in self.models.items():
                start = time.perf_counter()
                logits = loaded.network(loaded.input(pixels))
                probabilities[norm] = logits.softmax(dim=1).mean(dim=0).numpy().astype(np.float32)
                seconds[norm] = time.perf_counter() - start
        return Prediction(probabilities, seconds)


def load_model(path: Path, device: str = "cpu") -> LoadedModel:
    network, metadata = load_checkpoint(path, device=device)
    return _ready(network, metadata)


def load_hub_model(location: str) -> LoadedModel:
    """A model repository (OWNER/NAME) or a local folder in its layout; ``HubModelError`` says what is wrong."""
    model = NormLabNet.from_pretrained(location)
    missing = [key for key in METADATA_KEYS if key not in model.metadata]
    if missing:
        raise HubModelError(f"the config.json of {location} lacks the metadata {', '.join(missing)} the app "
                            f"shows. {PUBLISH_ADVICE}")
    return _ready(model.network, {**model.metadata, "norm": model.norm, "arch": model.arch})


def _ready(network: nn.Module, metadata: dict[str, Any]) -> LoadedModel:
    for parameter in network.parameters():
        # Grad-CAM asks autograd for the gradient of one activation only; frozen weights
        # mean no request ever writes a .grad into the shared model.
        parameter.requires_grad_(False)
    with torch.inference_mode():
        # The first calls of a network are several times slower (allocator and kernel set-up); pay that now.
        for _ in range(2):
            network(torch.zeros(1, 3, 32, 32))
    return LoadedModel(metadata["norm"], network, metadata)


def load_bank(checkpoint_dir: Path | str | None = None, models: str | None = None) -> ModelBank:
    """Load ``{bn,gn,ln}.safetensors`` from ``checkpoint_dir``, or the models of ``models`` (OWNER/PREFIX or a
    local folder, see ``model.hub.model_location``); a missing or broken one is recorded, not raised.

    The bank's folder is ``checkpoint_dir`` either way: the other tabs read it.
    """
    folder = CheckpointFolder(checkpoint_dir if checkpoint_dir is not None else default_checkpoint_dir())
    bank = ModelBank(folder)
    for norm in NORMS:
        if models is None:
            _load_checkpoint(bank, norm)
        else:
            _load_from_hub(bank, norm, model_location(models, norm))
    if bank.models:
        first = next(iter(bank.models.values()))
        bank.classes = tuple(first.metadata["classes"])
        for norm, loaded in list(bank.models.items()):
            if tuple(loaded.metadata["classes"]) != bank.classes:
                del bank.models[norm]
                source = folder.weights(norm) if models is None else model_location(models, norm)
                bank.problems[norm] = f"{source} was trained on different classes than the other models. " + (
                    f"Regenerate it with `{regenerate_command(norm)}`." if models is None else PUBLISH_ADVICE)
    return bank


def _load_checkpoint(bank: ModelBank, norm: str) -> None:
    path = bank.folder.weights(norm)
    try:
        loaded = load_model(path)
    except CheckpointError as error:
        reason = str(error).removesuffix("; regenerate it").rstrip(".")
        bank.problems[norm] = f"{reason}. Regenerate it with `{regenerate_command(norm)}`."
        return
    except Exception as error:  # noqa: BLE001 - whatever is wrong with one file, the other models still serve
        bank.problems[norm] = (
            f"{path} could not be loaded ({type(error).__name__}: {error}). "
            f"Regenerate it with `{regenerate_command(norm)}`."
        )
        return
    if loaded.norm != norm:
        bank.problems[norm] = (
            f"{path} holds a {norm_title(loaded.norm)} model, not {NORMS[norm].title}. "
            f"Regenerate it with `{regenerate_command(norm)}`."
        )
        return
    bank.models[norm] = loaded


def _load_from_hub(bank: ModelBank, norm: str, location: str) -> None:
    try:
        loaded = load_hub_model(location)
    except HubModelError as error:  # its message says what to do
        bank.problems[norm] = f"{error}."
        return
    except Exception as error:  # noqa: BLE001 - whatever is wrong with one model, the other models still serve
        bank.problems[norm] = f"{location} could not be loaded ({type(error).__name__}: {error}). {PUBLISH_ADVICE}"
        return
    if loaded.norm != norm:
        bank.problems[norm] = f"{location} holds a {norm_title(loaded.norm)} model, not {NORMS[norm].title}. " \
                              + PUBLISH_ADVICE
        return
    bank.models[norm] = loaded


@dataclass
class Prediction:
    probabilities: dict[str, np.ndarray]  # norm -> (10,) float32, summing to 1
    seconds: dict[str, float]  # norm -> wall time of that model's forward pass

    def top(self, norm: str) -> int:
        return int(self.probabilities[norm].argmax())
