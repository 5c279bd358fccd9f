"""What the page's events call: plain inputs in, component values out.

Problems the visitor can fix (a bad upload, an impossible filter) become ``gr.Error``
with a message saying what to do; the server carries on with the next request.
"""

import base64
import time
from html import escape
from typing import Any

import gradio as gr
import numpy as np
import torch

from model import NORM_TITLES, NORMS
from webapp.charts import probability_chart
from webapp.gradcam import feature_layers, grad_cam, overlay
from webapp.inference import ModelBank, predict
from webapp.mistakes import ANY, SHORT_NAMES, MistakeSet, agreement_choices, caption, select
from webapp.output_files import png_file
from webapp.preprocess import FIT_DESCRIPTIONS, FIT_MODES, ImageInputError, prepare

TOP_CLASS = -1  # Grad-CAM target meaning "whatever each model ranks first"
NO_CLASS = "any"


def _upload_source(value: Any) -> str | bytes | None:
    """The file behind an image input's raw value: a path, or the bytes of a ``data:`` URL."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        if value.get("path"):
            return str(value["path"])
        url = value.get("url") or ""
        if url.startswith("data:") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except ValueError:
                raise gr.Error("The image data could not be read. Please upload it again.") from None
    raise gr.Error("No image file arrived. Please upload the image again.", title="Upload failed")


def _count(number: int) -> str:
    return {1: "the one model", 2: "both models", 3: "all three models"}.get(number, f"{number} models")


def _top_k(value: Any) -> int:
    try:
        return int(np.clip(round(float(value)), 1, 10))
    except (TypeError, ValueError):
        return 3


def _class_filter(value: Any, classes: tuple[str, ...]) -> int | None:
    if value in (None, "", NO_CLASS):
        return None
    if value not in classes:
        raise gr.Error(f"Unknown class {value!r}; choose one of: {', '.join(classes)}.", title="Unknown class")
    return classes.index(value)


class Handlers:
    """Event handlers bound to the loaded models and the mistakes file (both read-only)."""

    def __init__(self, bank: ModelBank, mistakes: MistakeSet | None) -> None:
        self.bank = bank
        self.mistakes = mistakes
        first = next(iter(bank.models.values()), None)
        self.layers = feature_layers(first.network) if first else []

    # ---- Classify -------------------------------------------------------------------------

    def labels(self, probabilities: dict[str, Any] | None, top_k: Any) -> list[dict[str, float] | None]:
        """One ``gr.Label`` value per norm (``None`` for an unavailable model), top ``top_k`` classes."""
        k = _top_k(top_k)
        values: list[dict[str, float] | None] = []
        for norm in NORMS:
            if not probabilities or norm not in probabilities:
                values.append(None)
                continue
            p = np.asarray(probabilities[norm], dtype=np.float64)
            best = np.argsort(-p, kind="stable")[:k]
            values.append({self.bank.classes[i]: float(p[i]) for i in best})
        return values

    def verdict(self, probabilities: dict[str, np.ndarray]) -> str:
        classes = self.bank.classes
        tops = {norm: int(np.argmax(p)) for norm, p in probabilities.items()}
        if not tops:
            return ""
        parts = [
            f"<b>{escape(NORM_TITLES[norm])}</b> {escape(classes[top])} ({probabilities[norm][top]:.0%})"
            for norm, top in tops.items()
        ]
        if len(tops) == 1:
            return f'<div class="verdict single">Only one model is available: {parts[0]}</div>'
        if len(set(tops.values())) == 1:
            answer = escape(classes[next(iter(tops.values()))])
            who = "All three models" if len(tops) == 3 else "Both available models"
            return (
                f'<div class="verdict agree">✓ {who} say <b>{answer}</b>'
                f'<span class="verdict-detail">{" · ".join(parts)}</span></div>'
            )
        count = "three" if len(tops) == 3 else f"{len(tops)}"
        return (
            f'<div class="verdict disagree">⚠ The {count} models disagree'
            f'<span class="verdict-detail">{" · ".join(parts)}</span></div>'
        )

    def clear(self) -> tuple:
        """Empty values for the classify outputs and the Grad-CAM images."""
        return (None, None, None, None, "", "", "", "", None, None, *[None] * len(NORMS))

    def classify(self, image: Any, fit: str = "crop", top_k: Any = 3) -> tuple:
        """Uploaded file -> preview, three label values, chart, verdict, notes, and the states for later events.

        ``image`` is a path, or the raw value of an image input (a dict holding the upload's ``path``).
        """
        source = _upload_source(image)
        if source is None:
            return self.clear()[: -len(NORMS)]
        if fit not in FIT_MODES:
            raise gr.Error(f"Unknown fit {fit!r}; choose one of: {', '.join(FIT_MODES)}.", title="Unknown option")
        if not self.bank.models:
            raise gr.Error("No model is available; see the message at the top of the page.", title="No models")
        start = time.perf_counter()
        try:
            pixels, upload = prepare(source, fit)
        except ImageInputError as error:
            raise gr.Error(str(error), title="Cannot use this image", print_exception=False) from None
        prepare_seconds = time.perf_counter() - start
        prediction = predict(self.bank, pixels)
        probabilities = prediction.probabilities
        chart = probability_chart(probabilities, self.bank.classes)
        model_times = " · ".join(
            f"{SHORT_NAMES[norm]} {1000 * seconds:.1f} ms" for norm, seconds in prediction.seconds.items()
        )
        total = 1000 * sum(prediction.seconds.values())
        width, height = upload.size
        input_note = (
            f"**Your image:** {width} × {height} {upload.format} ({upload.mode}).  \n"
            f"**{FIT_MODES[fit]}:** {FIT_DESCRIPTIONS[fit]}."
        )
        threads = torch.get_num_threads()
        timing = (
            f"**Time:** {model_times}: **{total:.1f} ms** for {_count(len(prediction.seconds))}, plus "
            f"{1000 * prepare_seconds:.1f} ms to decode and resize the image (CPU, {threads} thread"
            f"{'s' if threads > 1 else ''})."
        )
        state = {norm: p.tolist() for norm, p in probabilities.items()}
        return (
            png_file(pixels),
            *self.labels(state, top_k),
            chart,
            self.verdict(probabilities),
            input_note,
            timing,
            pixels,
            state,
        )

    def explain(self, pixels: np.ndarray | None, layer: Any, opacity: Any, target: Any) -> list:
        """Grad-CAM overlays, one per norm (``None`` for an unavailable model)."""
        if pixels is None:
            return [None] * len(NORMS)
        pixels = np.asarray(pixels, dtype=np.uint8)
        try:
            layer = int(layer)
            target = int(target)
            opacity = float(opacity)
        except (TypeError, ValueError):
            raise gr.Error("Layer, class and opacity must be numbers.", title="Invalid option") from None
        classes = self.bank.classes
        outputs: list = []
        for norm in NORMS:
            loaded = self.bank.models.get(norm)
            if loaded is None:
                outputs.append(gr.Image(value=None, label=f"{NORM_TITLES[norm]} (unavailable)"))
                continue
            index = min(max(layer, 0), len(loaded.network.features) - 1)
            chosen = None if target == TOP_CLASS else int(np.clip(target, 0, len(classes) - 1))
            cam, explained = grad_cam(loaded.network, loaded.normalize(pixels), index, chosen)
            label = f"Where {loaded.title} looks for “{classes[explained]}”"
            outputs.append(gr.Image(value=png_file(overlay(pixels, cam, opacity)), label=label))
        return outputs

    def layer_choices(self) -> list[tuple[str, int]]:
        return [(layer.label, layer.index) for layer in self.layers]

    # ---- Mistakes -------------------------------------------------------------------------

    def agreement_dropdown(self, norm: str) -> gr.Dropdown:
        if self.mistakes is None or norm not in self.mistakes.norms:
            return gr.Dropdown(choices=[("any", ANY)], value=ANY)
        return gr.Dropdown(choices=agreement_choices(self.mistakes.norms, norm), value=ANY)

    def browse(self, norm: str, true_class: Any, predicted_class: Any, others: Any, count: Any) -> tuple:
        """Gallery tiles ``(image, caption)``, a one-line summary, and the row behind each tile."""
        mistakes = self.mistakes
        if mistakes is None:
            return [], "", []
        if norm not in mistakes.norms:
            raise gr.Error(f"The mistakes file has no {NORM_TITLES.get(norm, norm)} predictions.", title="No data")
        descriptions = {value: text for text, value in agreement_choices(mistakes.norms, norm)}
        others = others if others in descriptions else ANY
        true_index = _class_filter(true_class, mistakes.classes)
        predicted_index = _class_filter(predicted_class, mistakes.classes)
        rows = select(mistakes, norm, true_index, predicted_index, others)
        shown = rows[: max(1, int(count or 1))]
        tiles = [(png_file(mistakes.images[row]), caption(mistakes, row, norm)) for row in shown]
        filters = [f"{SHORT_NAMES.get(norm, norm)} wrong" if others == ANY else descriptions[others]]
        if true_index is not None:
            filters.append(f"true class {mistakes.classes[true_index]}")
        if predicted_index is not None:
            filters.append(f"predicted {mistakes.classes[predicted_index]}")
        summary = (
            f"**{len(rows):,}** test images: {', '.join(filters)}"
            + (f", showing the {len(shown):,} most confident mistakes." if len(shown) < len(rows) else ".")
            + ("" if len(rows) else " Loosen a filter to see some.")
            + " Click one to compare the three models."
        )
        return tiles, summary, shown.tolist()

    def inspect(self, rows: list[int] | None, evt: gr.SelectData) -> tuple:
        """The clicked tile with every model's probabilities."""
        mistakes = self.mistakes
        if mistakes is None or not rows or evt.index is None:
            return None, "", ""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not 0 <= int(index) < len(rows):
            return None, "", ""
        row = rows[int(index)]
        label = int(mistakes.labels[row])
        probabilities = {norm: mistakes.probabilities[row, i] for i, norm in enumerate(mistakes.norms)}
        lines = [f"**Test image #{int(mistakes.test_index[row])}** · true class: **{mistakes.classes[label]}**", ""]
        for i, norm in enumerate(mistakes.norms):
            predicted = int(mistakes.predicted[row, i])
            mark = "✓" if predicted == label else "✗"
            p = mistakes.probabilities[row, i]
            lines.append(
                f"- {mark} {NORM_TITLES.get(norm, norm)}: {mistakes.classes[predicted]} ({p[predicted]:.0%}; "
                f"true class {p[label]:.0%})"
            )
        chart = probability_chart(probabilities, mistakes.classes, true_class=label)
        return png_file(mistakes.images[row]), "\n".join(lines), chart
