"""The Inside tab: one image through one normalization layer of each model, and the numbers that layer used.

For the layer picked, each model shows the feature maps entering and leaving it, the sets of
values that share one mean and variance, the statistics it used on this image, and the
distribution of values before and after (``webapp.norm_figures`` draws them, ``probes.inside``
reads them). BatchNorm's training-mode statistics come from the batches of the Lab's companion
demo at its starting settings (``probes.coupling.companion_batches``: the image and
``COMPANION_SIZE - 1`` test images, ``COMPANION_BATCHES`` times, first draw). The handler
returns ``{output name: value}`` like ``webapp.callbacks``.
"""

from typing import Any

import gradio as gr
import numpy as np
import torch

from model import NORMS
from probes.coupling import companion_batches
from probes.inside import LayerReading, NormLayer, NormProbe, Sets, sets
from webapp.callbacks import _upload_source
from webapp.inference import ModelBank
from webapp.lab import COMPANION_BATCHES, COMPANION_SIZE
from webapp.norm_figures import feature_maps, histogram, sets_figure, statistics_chart
from webapp.output_files import png_file
from webapp.preprocess import ImageInputError, prepare

FIT = "crop"  # an upload here is centre-cropped to 32 x 32, the Classify tab's default
DRAW = 0  # the Lab demo's first draw of companions
PANEL_PARTS = ("summary", "maps", "histogram", "sets", "statistics")
PANELS = {norm: {part: f"{part}_{norm}" for part in PANEL_PARTS} for norm in NORMS}
# The order of /inside's outputs: the note on the layer, each kind of panel for BN, GN and LN, every number.
INSIDE_OUTPUTS = ("layer_note", *(PANELS[norm][part] for part in PANEL_PARTS for norm in NORMS), "numbers")
NO_IMAGE = "No image yet: upload one or click an example."


def _rounded(values: torch.Tensor | np.ndarray | float) -> Any:
    """Numbers for the JSON output, at float32's precision."""
    array = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(array).tolist() if array.ndim else float(
        f"{float(array):.6g}")


def _layer_index(layer: Any, count: int) -> int:
    try:
        value = float(layer)
    except (TypeError, ValueError):
        raise gr.Error(f"The layer must be a number from 0 to {count - 1}, not {layer!r}.",
                       title="Invalid layer") from None
    if not value.is_integer() or not 0 <= value < count:
        raise gr.Error(f"There is no normalization layer {layer!r}: this network has {count}, numbered 0 to "
                       f"{count - 1}.", title="No such layer")
    return int(value)


def _signed(value: float) -> str:
    """Two decimals with a true minus sign."""
    return f"{value:.2f}".replace("-", "−")


def _summary(norm: str, reading: LayerReading, batch: int) -> str:
    """A few lines of computed facts about what the layer did with this image."""
    layer = reading.layer
    title = NORMS[norm].title if norm in NORMS else norm
    own = reading.channel_mean().numpy()
    positions = layer.height * layer.width
    if reading.is_batch_norm:
        running_std = np.sqrt(reading.var.numpy() + reading.eps)
        distance = np.abs(own - reading.mean.numpy()) / running_std
        worst = int(distance.argmax())
        lines = [
            f"**{title}**: one mean and variance per channel.",
            "At inference: its running averages from training, the same for every image. Your image's own "
            f"channel means are **{distance.mean():.2f}** running standard deviations from them on average (at "
            f"most {distance[worst]:.2f}, channel {worst + 1}).",
        ]
        if reading.batch_mean is not None:
            batch_mean = reading.batch_mean.numpy()
            spread = (batch_mean.max(axis=0) - batch_mean.min(axis=0)) / running_std
            lines.append(f"In training mode: each batch's own. Over {len(batch_mean)} batches of your image and "
                         f"{batch - 1} test images, a channel's mean moves across **{spread.mean():.2f}** running "
                         "standard deviations on average.")
        return "\n- ".join(lines)
    mean = reading.mean.numpy()
    std = np.sqrt(reading.var.numpy() + reading.eps)
    per_group = layer.channels // layer.groups
    group_of = np.arange(layer.channels) // per_group
    distance = np.abs(own - mean[group_of]) / std[group_of]
    if layer.groups == 1:
        return "\n- ".join([
            f"**{title}**: one mean and variance per image, the same in training and at inference.",
            f"Your image: mean **{_signed(mean[0])}**, standard deviation **{std[0]:.2f}**, over all "
            f"{layer.channels} × {positions} = {layer.channels * positions:,} of its values.",
            f"Its channels' own means are **{distance.mean():.2f}** standard deviations from that mean on average "
            f"(at most {distance.max():.2f}).",
        ])
    listed = ", ".join(f"{_signed(m)} ± {s:.2f}" for m, s in zip(mean, std, strict=True))
    return "\n- ".join([
        f"**{title}**: one mean and variance per image and group, the same in training and at inference.",
        f"Your image: {layer.groups} groups of {per_group} channels ({per_group} × {positions} = "
        f"{per_group * positions:,} values each); mean ± standard deviation: {listed}.",
        f"A channel's own mean is **{distance.mean():.2f}** of its group's standard deviations from the group's "
        "mean on average.",
    ])


class InsideView:
    """Reads the same norm layer of every loaded model for one image, and draws what it read."""

    def __init__(self, bank: ModelBank, pool: torch.Tensor) -> None:
        self.bank = bank
        self.pool = pool  # uint8 (N, 3, 32, 32): the Lab demo's companions
        self.probes = {norm: NormProbe(loaded.network) for norm, loaded in bank.models.items()}
        first = next(iter(self.probes.values()), None)
        self.layers: list[NormLayer] = first.layers if first else []

    def layer_choices(self) -> list[tuple[str, int]]:
        return [(layer.label, layer.index) for layer in self.layers]

    def clear(self) -> dict[str, Any]:
        empty = dict.fromkeys(INSIDE_OUTPUTS, "")
        for panel in PANELS.values():
            empty[panel["maps"]] = None
        return {**empty, "numbers": None}

    def show(self, image: Any, layer: Any) -> dict[str, Any]:
        """An uploaded file (or an image input's raw value) and a norm layer index -> every panel's content."""
        if not self.layers:
            raise gr.Error("No model is available; see the message at the top of the page.", title="No models")
        index = _layer_index(layer, len(self.layers))
        source = _upload_source(image)
        if source is None:
            return {**self.clear(), "layer_note": NO_IMAGE}
        try:
            pixels, _ = prepare(source, FIT)
        except ImageInputError as error:
            raise gr.Error(str(error), title="Cannot use this image", print_exception=False) from None
        return self.show_pixels(pixels, index)

    def show_pixels(self, pixels: np.ndarray, index: int) -> dict[str, Any]:
        """(32, 32, 3) uint8 pixels and a valid norm layer index -> every panel's content."""
        image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).permute(2, 0, 1)
        batches = None
        if len(self.pool):
            batches = companion_batches(image, self.pool, COMPANION_BATCHES, COMPANION_SIZE,
                                        torch.Generator().manual_seed(DRAW))
        batch = COMPANION_SIZE if batches else 1
        layer = self.layers[index]
        outputs = self.clear()
        numbers: dict[str, Any] = {
            "layer": {"index": index, "name": layer.name, "channels": layer.channels, "height": layer.height,
                      "width": layer.width},
            "models": {},
        }
        for norm in PANELS.keys() - self.probes.keys():
            outputs[PANELS[norm]["summary"]] = (f"**{NORMS[norm].title}** is unavailable; see the message at the top "
                                                "of the page.")
        for norm, probe in self.probes.items():
            panel = PANELS[norm]
            if index >= len(probe.layers):
                outputs[panel["summary"]] = f"**{NORMS[norm].title}** has no normalization layer {index}."
                continue
            loaded = self.bank.models[norm]
            reading = probe.read(index, loaded.input(pixels), batches)
            title, colour = NORMS[norm].title, NORMS[norm].colour
            before, after = reading.before.numpy(), reading.after.numpy()
            maps, limit = feature_maps(before, after)
            found = sets(reading.layer, batch)
            outputs[panel["summary"]] = _summary(norm, reading, batch)
            outputs[panel["maps"]] = png_file(maps)
            outputs[panel["histogram"]] = histogram(before, after, limit, colour, title)
            outputs[panel["sets"]] = sets_figure(reading, found, batch, colour, title)
            outputs[panel["statistics"]] = statistics_chart(reading, colour, title)
            numbers["models"][norm] = self._numbers(reading, found, batch, limit)
        kinds = {norm: ("BatchNorm2d" if probe.layers[index].groups is None else
                        f"GroupNorm({probe.layers[index].groups}, {layer.channels})")
                 for norm, probe in self.probes.items() if index < len(probe.layers)}
        outputs["layer_note"] = (
            f"**Normalization layer {index + 1} of {len(self.layers)}** (`{layer.name}`): {layer.channels} channels "
            f"of {layer.height} × {layer.width} positions for your image. "
            + " · ".join(f"{NORMS[norm].short}: `{kind}`" for norm, kind in kinds.items())
            + (f". BatchNorm's training mode is shown on the Lab's batches: your image and {batch - 1} test images, "
               f"{COMPANION_BATCHES} times." if batches else ".")
        )
        outputs["numbers"] = numbers
        return outputs

    @staticmethod
    def _numbers(reading: LayerReading, found: Sets, batch: int, limit: float) -> dict[str, Any]:
        record: dict[str, Any] = {
            "layer_type": "BatchNorm2d" if reading.is_batch_norm else "GroupNorm",
            "groups": reading.layer.groups,
            "eps": reading.eps,
            "sets": {"batch": batch, "count": found.count, "values_each": found.size},
            "inference": {"mean": _rounded(reading.mean), "var": _rounded(reading.var)},
            "gamma": _rounded(reading.gamma),
            "beta": _rounded(reading.beta),
            "image_channel_mean": _rounded(reading.channel_mean()),
            "colour_limit": _rounded(limit),
        }
        if reading.batch_mean is not None:
            record["training"] = {"batch_size": batch, "batches": len(reading.batch_mean),
                                  "mean": _rounded(reading.batch_mean), "var": _rounded(reading.batch_var)}
        return record
