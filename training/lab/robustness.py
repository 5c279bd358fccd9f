"""Accuracy of each model on the test set under six corruptions at severities 0-5."""

from typing import Any

import torch
from torch import nn

from model import NORMS
from probes.corruptions import CORRUPTION_TITLES, CORRUPTIONS, SEVERITIES, corrupt
from training.data import Split
from training.evaluate import class_probabilities
from training.figures import pyplot
from training.lab.context import LabContext
from training.lab.seeds import differences_over_seeds, over_seeds, seeds_note, spread


def run(context: LabContext) -> dict[str, Any]:
    """Measured on every seed's models: the mean, with ``std`` beside it, and every two norms' differences
    (per corruption and on the average of the six) with their intervals over the seeds."""
    measured = over_seeds(context, lambda models: measure(models, context.data["test"]))
    differences = {name: differences_over_seeds(measured, "mean_corrupted_accuracy", name) for name in CORRUPTIONS}
    differences["clean"] = differences_over_seeds(measured, "clean_accuracy")
    differences["average"] = differences_over_seeds(measured, "average_corrupted_accuracy")
    return {**measured, "differences": differences}


def measure(models: dict[str, nn.Module], test: Split, seed: int = 0) -> dict[str, Any]:
    clean = {norm: _accuracy(model, test.images, test.labels) for norm, model in models.items()}
    accuracy: dict[str, dict[str, list[float]]] = {}
    for name in CORRUPTIONS:
        accuracy[name] = {norm: [clean[norm]] for norm in models}
        for severity in SEVERITIES:
            generator = torch.Generator().manual_seed(seed + severity)
            corrupted = corrupt(test.images, name, severity, generator)
            for norm, model in models.items():
                accuracy[name][norm].append(_accuracy(model, corrupted, test.labels))
        print(f"  {name}: " + ", ".join(
            f"{norm} {sum(values[1:]) / len(SEVERITIES):.1%}" for norm, values in accuracy[name].items()), flush=True)
    summary = {
        name: {norm: sum(values[1:]) / len(SEVERITIES) for norm, values in per_norm.items()}
        for name, per_norm in accuracy.items()
    }
    return {
        "setup": {"test_images": len(test), "severities": [0, *SEVERITIES], "seed": seed},
        "clean_accuracy": clean,
        "accuracy": accuracy,
        "mean_corrupted_accuracy": summary,
        "average_corrupted_accuracy": {norm: sum(summary[name][norm] for name in summary) / len(summary)
                                       for norm in models},
    }


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (class_probabilities(model, images).argmax(1).cpu() == labels.cpu()).float().mean().item()


def figure(measured: dict[str, Any]):
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.4), sharey=True)
    severities = measured["setup"]["severities"]
    for axis, (name, per_norm) in zip(axes.flat, measured["accuracy"].items(), strict=True):
        for norm, values in per_norm.items():
            errors = [100 * spread(measured, "accuracy", name, norm, i) for i in range(len(values))]
            axis.errorbar(severities, [100 * v for v in values], yerr=errors, fmt="o-", capsize=3,
                          color=NORMS[norm].colour, label=NORMS[norm].title)
        axis.set_title(CORRUPTION_TITLES[name], fontsize=10)
        axis.set_xticks(severities)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("severity (0 = clean)")
    for axis in axes[:, 0]:
        axis.set_ylabel("test accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Robustness on {measured['setup']['test_images']:,} test images ({seeds_note(measured)})",
                 fontsize=11)
    fig.tight_layout()
    return fig
