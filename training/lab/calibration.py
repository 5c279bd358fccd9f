"""Calibration: does a model's confidence match how often it is right?

Expected calibration error (ECE) with 15 equal-width confidence bins: the
frequency-weighted mean gap between confidence and accuracy in each bin.
"""

from typing import Any

import torch
from torch import nn

from model import NORMS
from training.data import Split
from training.evaluate import class_probabilities
from training.figures import pyplot
from training.lab.context import LabContext
from training.lab.seeds import over_seeds, seeds_note, spread

BINS = 15


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict[str, Any]:
    """ECE and per-bin counts, mean confidence and accuracy for probabilities (N, C)."""
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).float()
    which = torch.clamp((confidence * bins).long(), max=bins - 1)
    count = torch.bincount(which, minlength=bins).float()
    safe = count.clamp(min=1)
    mean_confidence = torch.bincount(which, confidence, minlength=bins) / safe
    accuracy = torch.bincount(which, correct, minlength=bins) / safe
    ece = ((count / len(labels)) * (mean_confidence - accuracy).abs()).sum().item()
    nll = torch.nn.functional.nll_loss(probabilities.clamp(min=1e-12).log(), labels).item()
    return {
        "ece": ece,
        "accuracy": correct.mean().item(),
        "mean_confidence": confidence.mean().item(),
        "nll": nll,
        "bins": {"count": count.long().tolist(), "confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist()},
    }



def run(context: LabContext) -> dict[str, Any]:
    """Measured on every seed's models: the mean, with ``std`` beside it."""
    return over_seeds(context, lambda models: measure(models, context.data["test"]))


def measure(models: dict[str, nn.Module], test: Split) -> dict[str, Any]:
    labels = test.labels.cpu()
    return {
        "setup": {"test_images": len(test), "bins": BINS},
        "results": {norm: reliability(class_probabilities(model, test.images).cpu(), labels)
                    for norm, model in models.items()},
    }


def figure(measured: dict[str, Any]):
    plt = pyplot()
    results = measured["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(3.8 * len(results), 3.8), sharey=True)
    edges = torch.linspace(0, 1, BINS + 1)
    for axis, (norm, result) in zip(axes, results.items(), strict=True):
        bins = result["bins"]
        filled = [i for i, n in enumerate(bins["count"]) if n > 0]
        axis.bar([edges[i].item() for i in filled], [bins["accuracy"][i] for i in filled], width=1 / BINS,
                 align="edge", color=NORMS[norm].colour, edgecolor="black", linewidth=0.4, label="accuracy")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece_spread = spread(measured, "results", norm, "ece")
        axis.set_title(f"{NORMS[norm].title}: ECE {result['ece']:.2%}"
                       + (f" ± {ece_spread:.2%}" if ece_spread else ""), fontsize=10)
        axis.set_xlabel("confidence")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy in bin")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Reliability diagrams on {measured['setup']['test_images']:,} test images ({seeds_note(measured)})",
                 fontsize=11)
    fig.tight_layout()
    return fig
