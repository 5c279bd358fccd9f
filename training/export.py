"""Everything training writes for the app and the README, each file written atomically.

Per norm: ``<norm>.safetensors``, ``<norm>_history.json``, ``<norm>_confusion.png``,
``<norm>_misclassified.png``. For the set: ``results.json``, ``curves.png``,
``mistakes.npz`` (every test image some model gets wrong, with each model's
probabilities) and ``examples/<class>.png``.
"""

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import NORM_TITLES, NORMS, count_parameters, load_checkpoint, save_checkpoint
from model.checkpoint import CheckpointError, atomic_write
from model.image_sheet import encode_sheet
from training.data import CLASSES, MEAN, STD, Split
from training.evaluate import predict
from training.loop import TrainResult


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


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, value: Any) -> None:
    write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def pyplot():
    """matplotlib.pyplot on the file-only backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> None:
    plt = pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_bytes(path, buffer.getvalue())


def export_norm(result: TrainResult, test_split: Split, output_dir: Path) -> dict[str, Any]:
    """Write one trained model's checkpoint, history, confusion matrix and mistake grid."""
    config, last = result.config, result.history[-1]
    probabilities = predict(result.model, test_split.images).cpu()
    predicted = probabilities.argmax(1)
    test_accuracy = (predicted == test_split.labels.cpu()).sum().item() / len(predicted)
    metadata = {
        "arch": config.arch, "norm": config.norm, "parameters": count_parameters(result.model),
        "epochs": config.epochs, "train_accuracy": last["train_accuracy"], "test_accuracy": test_accuracy,
        "mean": list(MEAN), "std": list(STD), "classes": list(CLASSES), "seed": config.seed,
        "batch_size": config.batch_size, "lr": config.lr, "crop_padding": config.crop_padding,
        "weight_decay": config.weight_decay, "label_smoothing": config.label_smoothing,
        "train_images": config.train_subset or 50000,
        "train_seconds": sum(h["seconds"] for h in result.history),
    }
    output_dir = Path(output_dir)
    save_checkpoint(result.model, output_dir / f"{config.norm}.safetensors", metadata)
    write_json(output_dir / f"{config.norm}_history.json", {"config": metadata, "epochs": result.history})
    labels = test_split.labels.cpu()
    save_figure(confusion_figure(labels, predicted, config.norm), output_dir / f"{config.norm}_confusion.png")
    wrong = torch.nonzero(predicted != labels).flatten()[:10]
    save_figure(
        mistakes_grid(test_split.images.cpu()[wrong], labels[wrong], predicted[wrong], config.norm),
        output_dir / f"{config.norm}_misclassified.png",
    )
    return metadata


def confusion_figure(labels: torch.Tensor, predicted: torch.Tensor, norm: str):
    plt = pyplot()
    matrix = torch.zeros(10, 10, dtype=torch.long)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    axes.imshow(matrix, cmap="Blues")
    for i in range(10):
        for j in range(10):
            value = matrix[i, j].item()
            axes.text(j, i, value, ha="center", va="center", fontsize=7,
                      color="white" if value > matrix.max().item() / 2 else "black")
    axes.set_xticks(range(10), CLASSES, rotation=45, ha="right")
    axes.set_yticks(range(10), CLASSES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = matrix.diag().sum().item() / matrix.sum().item()
    axes.set_title(f"{NORM_TITLES[norm]}: confusion matrix (test accuracy {accuracy:.2%})")
    return figure


def mistakes_grid(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, norm: str):
    plt = pyplot()
    figure, axes = plt.subplots(2, 5, figsize=(9, 4.4))
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index].permute(1, 2, 0).numpy(), interpolation="nearest")
            axis.set_title(f"true: {CLASSES[labels[index]]}\npred: {CLASSES[predicted[index]]}", fontsize=9)
    figure.suptitle(f"{NORM_TITLES[norm]}: 10 misclassified test images")
    return figure


def curves_figure(histories: dict[str, list[dict[str, float]]]):
    plt = pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for norm, history in histories.items():
        epochs = [h["epoch"] for h in history]
        (line,) = loss_axes.plot(epochs, [h["train_loss"] for h in history], label=f"{NORM_TITLES[norm]} train")
        loss_axes.plot(epochs, [h["test_loss"] for h in history], "--", color=line.get_color(),
                       label=f"{NORM_TITLES[norm]} test")
        accuracy_axes.plot(epochs, [100 * h["train_accuracy"] for h in history], color=line.get_color(),
                           label=f"{NORM_TITLES[norm]} train")
        accuracy_axes.plot(epochs, [100 * h["test_accuracy"] for h in history], "--", color=line.get_color(),
                           label=f"{NORM_TITLES[norm]} test")
    loss_axes.set(xlabel="epoch", ylabel="loss (train: with label smoothing)", title="Loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure


def export_comparison(output_dir: Path, test_split: Split) -> dict[str, Any]:
    """Write what compares the models: results table, curves, mistakes file, examples."""
    output_dir = Path(output_dir)
    models, results, histories = {}, {}, {}
    for norm in NORMS:
        path = output_dir / f"{norm}.safetensors"
        if not path.exists():
            continue
        try:
            models[norm], results[norm] = load_checkpoint(path)
        except CheckpointError as error:
            print(f"warning: leaving {norm} out of the comparison: {error}")
            continue
        histories[norm] = json.loads((output_dir / f"{norm}_history.json").read_text())["epochs"]
    if not models:
        return {}
    write_json(output_dir / "results.json", results)
    save_figure(curves_figure(histories), output_dir / "curves.png")

    images, labels = test_split.images.cpu(), test_split.labels.cpu()
    probabilities = torch.stack([predict(model, images) for model in models.values()], dim=1)  # (N, K, 10)
    correct = probabilities.argmax(2) == labels[:, None]
    wrong_somewhere = torch.nonzero(~correct.all(1)).flatten()

    def write_mistakes(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                image_sheet=encode_sheet(images[wrong_somewhere].permute(0, 2, 3, 1).numpy()),
                labels=labels[wrong_somewhere].numpy().astype(np.uint8),
                probabilities=probabilities[wrong_somewhere].numpy().astype(np.float16),
                test_index=wrong_somewhere.numpy().astype(np.int16),
                norms=np.array(list(models)),
                classes=np.array(CLASSES),
            )

    atomic_write(output_dir / "mistakes.npz", write_mistakes)

    # One example per class: the image all models are most sure of, so it shows agreement.
    from PIL import Image

    confidence = probabilities.gather(2, labels[:, None, None].expand(-1, len(models), 1)).squeeze(2).min(1).values
    for class_index, name in enumerate(CLASSES):
        candidates = torch.nonzero(labels == class_index).flatten()
        best = candidates[confidence[candidates].argmax()]
        buffer = io.BytesIO()
        Image.fromarray(images[best].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        write_bytes(output_dir / "examples" / f"{name}.png", buffer.getvalue())
    return results
