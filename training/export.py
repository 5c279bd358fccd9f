"""Everything training writes into the checkpoint folder (``artifacts.CheckpointFolder``), atomically.

Per norm: the weights with their metadata, the history, the confusion matrix and ten
mistakes. For the set: results.json, the curves, the mistakes file and one example per class.
"""

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from artifacts.atomic import write_bytes
from artifacts.folder import CheckpointFolder
from artifacts.mistakes import write_mistakes
from artifacts.results import read_history, write_history
from artifacts.weights import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from model import CLASSES, NORMS, build_model, count_parameters, network_fingerprint
from training.config import TrainConfig
from training.data import Split
from training.evaluate import class_probabilities
from training.figures import confusion_figure, curves_figure, mistakes_grid, save_figure
from training.loop import TrainResult
from training.summary import write_summary


class OutputError(RuntimeError):
    """The output folder cannot be written."""


def check_writable(folder: Path) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputError(
            f"cannot write to {Path(folder).resolve()} ({error.strerror or error}); "
            "choose another folder or fix its permissions"
        ) from error


def finished(config: TrainConfig, output_dir: Path) -> bool:
    """Whether ``output_dir`` already holds this run's checkpoint: same network, settings and data.

    Lets a command that trains many runs (several seeds, a grid) be re-run after an
    interruption on another machine, where the per-epoch states are gone, and train only
    what is missing. Checkpoints from before the network's fingerprint was recorded never match.
    """
    try:
        saved = read_metadata(CheckpointFolder(output_dir).seed_folder(config.seed).weights(config.norm))
    except CheckpointError:
        return False
    with torch.device("meta"):
        network = network_fingerprint(build_model(config.arch, config.norm, config.gn_groups))
    expected = {"network": network, "arch": config.arch, "norm": config.norm, "seed": config.seed,
                "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                "crop_padding": config.crop_padding, "weight_decay": config.weight_decay,
                "label_smoothing": config.label_smoothing, "recipe": config.recipe,
                "gn_groups": config.gn_groups if config.norm == "gn" else None,
                "validation": config.validation, "train_subset": config.train_subset, "levers": config.levers()}
    found = {**{key: saved.get(key) for key in expected}, "recipe": saved.get("recipe", "ours"),
             "levers": {name: saved[name] for name in config.lever_defaults() if name in saved},
             "validation": "validation_split" in saved,
             "train_subset": config.train_subset if saved.get("train_images") == config.train_subset else None}
    return found == expected


def model_metadata(result: TrainResult, test_accuracy: float | None, train_images: int) -> dict[str, Any]:
    """What a checkpoint says of its model: the network, the recipe that trained it, and how it did."""
    config, last = result.config, result.history[-1]
    metadata = {
        "arch": config.arch, "norm": config.norm, "parameters": count_parameters(result.model),
        "epochs": config.epochs, "train_accuracy": last["train_accuracy"], "test_accuracy": test_accuracy,
        "mean": list(config.mean), "std": list(config.std), "classes": list(CLASSES), "seed": config.seed,
        "batch_size": config.batch_size, "lr": config.lr, "crop_padding": config.crop_padding,
        "weight_decay": config.weight_decay, "label_smoothing": config.label_smoothing,
        "train_images": min(config.train_subset or train_images, train_images),
        "train_seconds": sum(h["seconds"] for h in result.history),
        "network": network_fingerprint(result.model),
    }
    if config.recipe != "ours":
        metadata["recipe"] = config.recipe
    metadata.update(config.levers())  # only those set: a checkpoint without them was trained without
    if config.norm == "gn":
        metadata["gn_groups"] = config.gn_groups
    return metadata


def export_candidate(result: TrainResult, output_dir: Path, train_images: int, validation_split: str) -> Path:
    """A search candidate's model, so that it can be measured on photos (``benchmarks/photos.py``).

    It was trained on the 45,000 images the validation split leaves and never evaluated on the
    test set: its test accuracy is ``None`` and its validation accuracy that of its last epoch.
    """
    metadata = {**model_metadata(result, None, train_images),
                "validation_accuracy": result.history[-1]["val_accuracy"], "validation_split": validation_split}
    path = CheckpointFolder(output_dir).weights(result.config.norm)
    save_checkpoint(result.model, path, metadata)
    return path


def export_norm(result: TrainResult, test_split: Split, output_dir: Path, train_images: int = 50_000,
                validation: tuple[Split, str] | None = None) -> dict[str, Any]:
    """Write one trained model's checkpoint and history, and for the shipped seed its confusion matrix
    and mistake grid (the other seeds are kept for their numbers).

    ``validation``: the held-out split the run was evaluated on, and its id, for runs that
    trained on the other training images; its accuracy goes into the metadata.
    """
    config = result.config
    predicted = class_probabilities(result.model, test_split.images, mean=config.mean, std=config.std).cpu().argmax(1)
    test_accuracy = (predicted == test_split.labels.cpu()).sum().item() / len(predicted)
    metadata = model_metadata(result, test_accuracy, train_images)
    if validation is not None:
        held_out, held_out_id = validation
        correct = (class_probabilities(result.model, held_out.images, mean=config.mean, std=config.std).cpu().argmax(1)
                   == held_out.labels.cpu())
        metadata["validation_accuracy"] = correct.float().mean().item()
        metadata["validation_split"] = held_out_id
    folder = CheckpointFolder(output_dir).seed_folder(config.seed)
    save_checkpoint(result.model, folder.weights(config.norm), metadata)
    write_history(folder.history(config.norm), metadata, result.history)
    if config.seed != 0:
        return metadata
    labels = test_split.labels.cpu()
    save_figure(confusion_figure(labels, predicted, config.norm), folder.confusion(config.norm))
    wrong = torch.nonzero(predicted != labels).flatten()[:10]
    save_figure(
        mistakes_grid(test_split.images.cpu()[wrong], labels[wrong], predicted[wrong], config.norm),
        folder.misclassified(config.norm),
    )
    return metadata


def export_comparison(output_dir: Path, test_split: Split) -> dict[str, Any]:
    """Write what compares the shipped models: results (with every seed), curves, mistakes file, examples."""
    folder = CheckpointFolder(output_dir)
    models, results, histories = {}, {}, {}
    for norm in NORMS:
        path = folder.weights(norm)
        if not path.exists():
            continue
        try:
            models[norm], results[norm] = load_checkpoint(path)
        except CheckpointError as error:
            print(f"warning: leaving {norm} out of the comparison: {error}")
            continue
        histories[norm] = read_history(folder.history(norm))
    if not models:
        return {}
    write_summary(folder)
    save_figure(curves_figure(histories), folder.curves)

    images, labels = test_split.images.cpu(), test_split.labels.cpu()
    predicted = torch.stack([class_probabilities(model, images, mean=results[norm]["mean"], std=results[norm]["std"])
                             for norm, model in models.items()], dim=1)  # (N, K, 10)
    # Decided on the probabilities as mistakes.npz stores them (float16), so that every image in the file is
    # wrong for some model by the file's own numbers, ties of near-equal probabilities included.
    stored = torch.from_numpy(predicted.numpy().astype(np.float16).argmax(2))
    correct = stored == labels[:, None]
    wrong_somewhere = torch.nonzero(~correct.all(1)).flatten()
    write_mistakes(folder.mistakes, images[wrong_somewhere].permute(0, 2, 3, 1).numpy(),
                   labels[wrong_somewhere].numpy(), predicted[wrong_somewhere].numpy(), wrong_somewhere.numpy(),
                   list(models), CLASSES)

    # One example per class: the image all models are most sure of, so it shows agreement.
    confidence = predicted.gather(2, labels[:, None, None].expand(-1, len(models), 1)).squeeze(2).min(1).values
    for class_index, name in enumerate(CLASSES):
        candidates = torch.nonzero(labels == class_index).flatten()
        best = candidates[confidence[candidates].argmax()]
        buffer = io.BytesIO()
        Image.fromarray(images[best].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        write_bytes(folder.example(name), buffer.getvalue())
    return results
