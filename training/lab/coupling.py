"""Batch coupling: how much a test image's prediction moves when its batch companions change.

For each probe image, the prediction is computed in ``trials`` batches whose other
``batch_size - 1`` images are drawn at random from the test set; we report, per model
and mode, the largest change of any class probability (against the first batch) and
how often the top class differs from the first batch's.
"""

from typing import Any

import torch
from torch import nn

from model import NORMS
from probes.coupling import companion_sweep, train_mode_copy
from training.data import Split
from training.figures import pyplot
from training.lab.context import LabContext
from training.lab.seeds import over_seeds, seeds_note, spread

MODES = ("train", "eval")



def run(context: LabContext) -> dict[str, Any]:
    """Measured on every seed's models: the mean, with ``std`` beside it."""
    return over_seeds(context, lambda models: measure(models, context.data["test"], probes=context.args.probes))


def measure(models: dict[str, nn.Module], test: Split, probes: int = 100, trials: int = 6,
            batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(test), generator=generator)[:probes]
    results: dict[str, Any] = {}
    for norm, model in models.items():
        results[norm] = {}
        for mode in MODES:
            network = train_mode_copy(model) if mode == "train" else model.eval()
            max_change, flips = [], 0
            for index in chosen:
                swept = companion_sweep(network, test.images[index], test.images, trials, batch_size, generator)
                max_change.append((swept[1:] - swept[0]).abs().max().item())
                flips += (swept[1:].argmax(1) != swept[0].argmax()).sum().item()
            changes = torch.tensor(max_change)
            results[norm][mode] = {
                "mean_max_abs_change": changes.mean().item(),
                "largest_change": changes.max().item(),
                "top_class_flip_rate": flips / (probes * (trials - 1)),
            }
    return {
        "setup": {"probes": probes, "trials": trials, "batch_size": batch_size, "seed": seed},
        "results": results,
    }


def figure(measured: dict[str, Any]):
    plt = pyplot()
    results = measured["results"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    norms = list(results)
    width = 0.38
    for axis, key, title in ((axes[0], "mean_max_abs_change", "Mean largest |Δ probability|"),
                             (axes[1], "top_class_flip_rate", "Top class flips (fraction of batches)")):
        for offset, mode in ((-width / 2, "train"), (width / 2, "eval")):
            values = [results[norm][mode][key] for norm in norms]
            errors = [spread(measured, "results", norm, mode, key) for norm in norms]
            bars = axis.bar([i + offset for i in range(len(norms))], values, width, yerr=errors, capsize=3,
                            color=[NORMS[n].colour for n in norms], alpha=1.0 if mode == "train" else 0.4,
                            edgecolor="black", linewidth=0.5)
            for bar, value in zip(bars, values, strict=True):
                axis.annotate(f"{value:.3f}\n{mode}", (bar.get_x() + bar.get_width() / 2, value),
                              ha="center", va="bottom", fontsize=7)
        axis.set_xticks(range(len(norms)), [NORMS[n].title for n in norms])
        axis.set_title(title, fontsize=10)
        axis.margins(y=0.25)
        axis.grid(axis="y", alpha=0.3)
    setup = measured["setup"]
    fig.suptitle(f"Batch coupling: one test image in {setup['trials']} random batches of {setup['batch_size']} "
                 f"({setup['probes']} images; {seeds_note(measured)}); solid = train mode, pale = eval mode",
                 fontsize=10)
    fig.tight_layout()
    return fig
