"""The figures training writes: confusion matrices, ten mistakes, loss and accuracy curves.

matplotlib runs on its file-only backend (no display needed) and is imported on first use.
"""

import io
from pathlib import Path

import torch

from artifacts.atomic import write_bytes
from model import CLASSES, norm_title


def pyplot():
    """matplotlib.pyplot on the file-only backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def save_figure(figure, path: Path) -> None:
    write_bytes(path, figure_png(figure))


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
    axes.set_title(f"{norm_title(norm)}: confusion matrix (test accuracy {accuracy:.2%})")
    return figure


def mistakes_grid(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, norm: str):
    plt = pyplot()
    figure, axes = plt.subplots(2, 5, figsize=(9, 4.4))
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index].permute(1, 2, 0).numpy(), interpolation="nearest")
            axis.set_title(f"true: {CLASSES[labels[index]]}\npred: {CLASSES[predicted[index]]}", fontsize=9)
    figure.suptitle(f"{norm_title(norm)}: 10 misclassified test images")
    return figure


def curves_figure(histories: dict[str, list[dict[str, float]]]):
    plt = pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for norm, history in histories.items():
        epochs = [h["epoch"] for h in history]
        held_out = "val" if "val_loss" in history[0] else "test"  # runs with a validation split
        (line,) = loss_axes.plot(epochs, [h["train_loss"] for h in history], label=f"{norm_title(norm)} train")
        loss_axes.plot(epochs, [h[f"{held_out}_loss"] for h in history], "--", color=line.get_color(),
                       label=f"{norm_title(norm)} {held_out}")
        accuracy_axes.plot(epochs, [100 * h["train_accuracy"] for h in history], color=line.get_color(),
                           label=f"{norm_title(norm)} train")
        accuracy_axes.plot(epochs, [100 * h[f"{held_out}_accuracy"] for h in history], "--",
                           color=line.get_color(), label=f"{norm_title(norm)} {held_out}")
    loss_axes.set(xlabel="epoch", ylabel="loss (train: with label smoothing)", title="Loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure
