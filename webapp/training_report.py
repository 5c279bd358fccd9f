"""The Training tab's content: results next to the reference's, the figures, and what each norm computes."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from artifacts.folder import CheckpointFolder
from artifacts.results import read_over_seeds, read_results
from model import ARCHITECTURES, NORMS, build_model, count_parameters
from webapp.gradcam import feature_layers
from webapp.inference import ModelBank

REFERENCE = ARCHITECTURES["reference"]  # the network this project started from, with its published results

TABLE_HEADERS = [
    "Normalization", "Parameters", "Epochs", "Train acc.", "Test acc.", "Training time", "Reference (published)",
]
SEEDS_HEADER = "Test acc. over seeds (mean ± std)"
RETRAINED_HEADER = "Reference, our recipe (test)"
REPRODUCED_HEADER = "Reference, published recipe reproduced here (test, over seeds)"


@dataclass
class Figures:
    curves: Path | None
    confusion: dict[str, Path]  # norm -> PNG


def _minutes(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _percent(metadata: dict[str, Any], key: str) -> str:
    value = metadata.get(key)
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "–"


def results_table(bank: ModelBank) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per norm: ours, with the reference network's train / test accuracy beside them.

    Train and test accuracy are the shipped (seed 0) model's. The column over seeds appears
    when ``results.json`` has more than one seed; the "our recipe" column only when
    ``checkpoints/reference/results.json`` exists.
    """
    ours = read_results(bank.folder.results) or {norm: loaded.metadata for norm, loaded in bank.models.items()}
    over_seeds, _ = read_over_seeds(bank.folder.results)
    several = any(len(summary.get("runs", [])) > 1 for summary in over_seeds.values())
    retrained = read_results(bank.folder.reference.results)
    reproduced, _ = read_over_seeds(bank.folder.grid_cell(REFERENCE.name, REFERENCE.published_recipe).results)
    rows = []
    for norm in NORMS:
        mine, theirs = ours.get(norm, {}), retrained.get(norm)
        published = REFERENCE.published[norm]
        published_train, published_test = 100 * published.train_accuracy, 100 * published.test_accuracy
        rows.append([
            NORMS[norm].title,
            f"{mine['parameters']:,}" if "parameters" in mine else "–",
            str(mine.get("epochs", "–")),
            _percent(mine, "train_accuracy"),
            _percent(mine, "test_accuracy"),
            _minutes(mine.get("train_seconds")),
            f"{published_train:.2f}% / {published_test:.2f}%",
        ])
        if several:
            rows[-1].insert(5, _mean_and_spread(over_seeds.get(norm)))
        if reproduced:
            rows[-1].append(_mean_and_spread(reproduced.get(norm)))
        if retrained:
            rows[-1].append(f"{_percent(theirs, 'train_accuracy')} / {_percent(theirs, 'test_accuracy')}" if theirs
                            else "–")
    headers = list(TABLE_HEADERS)
    if several:
        headers.insert(5, SEEDS_HEADER)
    return headers + [REPRODUCED_HEADER] * bool(reproduced) + [RETRAINED_HEADER] * bool(retrained), rows


def _mean_and_spread(summary: dict[str, Any] | None) -> str:
    try:
        test = summary["test_accuracy"]
        return f"{100 * test['mean']:.2f} ± {100 * test['std']:.2f}% ({test['n']} seeds)"
    except (TypeError, KeyError):
        return "–"


def differences_markdown(bank: ModelBank) -> str:
    """One line per pair of norms: what the 95% interval of the difference over seeds allows one to say."""
    _, differences = read_over_seeds(bank.folder.results)
    lines = [f"- {difference['verdict']}" for difference in differences.values() if "verdict" in difference]
    if not lines:
        return ""
    return ("**Differences in test accuracy** (Welch's t, 95% interval over seeds; a difference is claimed only "
            "when the interval excludes zero):\n" + "\n".join(lines))


def reference_note(bank: ModelBank) -> str:
    """Which reference numbers the table shows, in one sentence."""
    parameters = count_parameters(build_model(REFERENCE.name, "bn"))
    note = (
        f"The reference is the network this project started from ({parameters:,} parameters), shown as "
        "train / test accuracy; its published numbers are one run per norm after 20 epochs."
    )
    reproduced, _ = read_over_seeds(bank.folder.grid_cell(REFERENCE.name, REFERENCE.published_recipe).results)
    if reproduced:
        note += (" “Published recipe reproduced here” is that network trained here with the recipe of the published "
                 "runs (`python -m training --arch reference --recipe published`), over seeds.")
    retrained = read_results(bank.folder.reference.results)
    if retrained:
        first = next(iter(retrained.values()))
        note += (
            f" “{RETRAINED_HEADER.removesuffix(' (test)')}” is that network trained with this project's recipe "
            f"({first.get('epochs', '?')} epochs)."
        )
    return note


def find_figures(folder: CheckpointFolder) -> Figures:
    curves = folder.curves
    confusion = {norm: folder.confusion(norm) for norm in NORMS}
    return Figures(curves if curves.is_file() else None, {n: p for n, p in confusion.items() if p.is_file()})


def _first_group_norm(network: nn.Module) -> nn.GroupNorm | None:
    return next((m for m in network.modules() if isinstance(m, nn.GroupNorm)), None)


def explanation(bank: ModelBank) -> str:
    """What each normalization averages over, with the numbers of one real layer of the loaded network."""
    batch, channels, height, width, groups, block = 256, 32, 16, 16, 4, "a layer"
    if bank.models:
        first = next(iter(bank.models.values()))
        batch = int(first.metadata.get("batch_size", batch))
        layers = feature_layers(first.network)
        # A layer in the middle of the network: large enough maps that the three counts differ clearly.
        layer = layers[min(1, len(layers) - 1)]
        channels, height, width, block = layer.channels, layer.height, layer.width, layer.label.split(" · ")[0]
    if "gn" in bank.models and (norm := _first_group_norm(bank.models["gn"].network)) is not None:
        groups = norm.num_groups
    per_group = max(channels // groups, 1)
    size = f"{height} × {width}"
    rows = [
        "| | averages over | one μ and σ² per | here: how many statistics, each over how many numbers |",
        "|---|---|---|---|",
        f"| **BatchNorm** | (N, H, W): one channel, in every image of the batch, at every position | channel | "
        f"{channels} pairs, each over {batch} × {size} = {batch * height * width:,} values |",
        f"| **GroupNorm** ({groups} groups) | (C/G, H, W): one group of {per_group} channels of one image | "
        f"image and group | {batch} × {groups} pairs, each over {per_group} × {size} = "
        f"{per_group * height * width:,} values |",
        f"| **LayerNorm** | (C, H, W): every channel and position of one image | image | "
        f"{batch} pairs, each over {channels} × {size} = {channels * height * width:,} values |",
    ]
    table = "\n".join(rows)
    return f"""
### What the three normalizations compute

Every normalization layer in this network receives a stack of feature maps **x** of shape
**(N, C, H, W)**: N images in the batch, C channels, H × W positions. All three compute

  **y = γ · (x − μ) / √(σ² + ε) + β**

with a learned scale γ and shift β for each channel. They differ only in **which numbers share one
mean μ and one variance σ²**. Take {block} of this network, whose output is
({batch}, {channels}, {height}, {width}) during training (batch size {batch}):

{table}

- **BatchNorm** is the only one that mixes images: during training each image is normalized with
  statistics of the whole batch, and the layer keeps running averages of μ and σ². At inference — as in
  this app, one image at a time — it uses those stored averages, so a prediction never depends on
  other images. Its training behaviour depends on the batch size: small batches give noisy statistics.
- **GroupNorm** splits the C channels into G groups and normalizes each group of each image on its own.
  It computes exactly the same thing in training and at inference, for any batch size (even 1).
  With G = C it would be InstanceNorm; with G = 1, LayerNorm.
- **LayerNorm** here is **GroupNorm(1, C)**: one group holding all channels, normalized per image.
  (PyTorch's `nn.LayerNorm([C, H, W])` computes the same μ and σ² but learns a γ and β for every one of
  the C × H × W elements; GroupNorm(1, C) learns one per channel, like the other two.)
"""
