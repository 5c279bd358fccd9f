"""What the Classify and Mistakes tabs' events call: plain inputs in, named output values out.

Each handler returns ``{output name: value}``; the layout maps the names to its components
(``webapp.layout.named``). Problems the visitor can fix (a bad upload, an impossible
filter) become ``gr.Error`` with a message saying what to do; the server carries on with
the next request.
"""

import base64
import time
from html import escape
from typing import Any

import gradio as gr
import numpy as np
import torch

from artifacts.mistakes import MistakeSet
from model import NORMS, norm_short, norm_title
from webapp.charts import probability_chart
from webapp.gradcam import feature_layers, grad_cam, overlay
from webapp.inference import ModelBank
from webapp.mistakes import ANY, agreement_choices, caption, select
from webapp.output_files import png_data_url, png_file
from webapp.preprocess import FIT_DESCRIPTIONS, FIT_MODES, VIEW_MODES, ImageInputError, model_views, prepare

TOP_CLASS = -1  # Grad-CAM target meaning "whatever each model ranks first"
NO_CLASS = "any"
# Output names: one label and one Grad-CAM image per norm.
LABELS = {norm: f"label_{norm}" for norm in NORMS}
CAMS = {norm: f"cam_{norm}" for norm in NORMS}
PREVIEW, GRADCAM = "preview", "gradcam"  # the CSS classes the page draws these inline images with
CAM_NOTE = "cam_note"  # which class each Grad-CAM map explains
EXPLAIN_OUTPUTS = (*CAMS.values(), CAM_NOTE)
CLASSIFY_OUTPUTS = ("preview", *LABELS.values(), "chart", "verdict", "input_note", "timing", "pixels", "probabilities")


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


def image_html(pixels: np.ndarray, kind: str, description: str) -> str:
    """An image inside the answer (no file for the page to fetch), drawn with hard edges by the page's CSS
    class ``kind`` (``PREVIEW`` or ``GRADCAM``); ``description`` is its alternative text."""
    return f'<img class="{kind}" src="{png_data_url(pixels)}" alt="{escape(description)}">'


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

    def labels(self, probabilities: dict[str, Any] | None, top_k: Any) -> dict[str, dict[str, float] | None]:
        """One ``gr.Label`` value per norm (``None`` for an unavailable model), top ``top_k`` classes."""
        k = _top_k(top_k)
        values: dict[str, dict[str, float] | None] = {}
        for norm, name in LABELS.items():
            if not probabilities or norm not in probabilities:
                values[name] = None
                continue
            p = np.asarray(probabilities[norm], dtype=np.float64)
            best = np.argsort(-p, kind="stable")[:k]
            values[name] = {self.bank.classes[i]: float(p[i]) for i in best}
        return values

    def verdict(self, probabilities: dict[str, np.ndarray]) -> str:
        classes = self.bank.classes
        tops = {norm: int(np.argmax(p)) for norm, p in probabilities.items()}
        if not tops:
            return ""
        parts = [
            f"<b>{escape(NORMS[norm].title)}</b> {escape(classes[top])} ({probabilities[norm][top]:.0%})"
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

    def clear(self) -> dict[str, Any]:
        """Empty values for the classify outputs and the Grad-CAM images."""
        empty = {name: None for name in (*CLASSIFY_OUTPUTS, *EXPLAIN_OUTPUTS)}
        html = ("preview", *CAMS.values(), "chart", "verdict", "input_note", "timing", CAM_NOTE)
        return {**empty, **dict.fromkeys(html, "")}

    def classify(self, image: Any, fit: str = "crop", top_k: Any = 3, views: str | None = "single") -> dict[str, Any]:
        """Uploaded file -> preview, three label values, chart, verdict, notes, and the states for later events.

        ``image`` is a path, or the raw value of an image input (a dict holding the upload's ``path``).
        ``views``: one of ``VIEW_MODES``, the views whose probabilities are averaged (None: a single view).
        """
        source = _upload_source(image)
        if source is None:
            return {name: value for name, value in self.clear().items() if name in CLASSIFY_OUTPUTS}
        if fit not in FIT_MODES:
            raise gr.Error(f"Unknown fit {fit!r}; choose one of: {', '.join(FIT_MODES)}.", title="Unknown option")
        views = views or "single"
        if views not in VIEW_MODES:
            raise gr.Error(f"Unknown views {views!r}; choose one of: {', '.join(VIEW_MODES)}.",
                           title="Unknown option")
        if not self.bank.models:
            raise gr.Error("No model is available; see the message at the top of the page.", title="No models")
        start = time.perf_counter()
        try:
            pixels, upload = prepare(source, fit)
        except ImageInputError as error:
            raise gr.Error(str(error), title="Cannot use this image", print_exception=False) from None
        stack = model_views(upload.picture, pixels, fit, views)
        prepare_seconds = time.perf_counter() - start
        prediction = self.bank.predict(stack)
        probabilities = prediction.probabilities
        chart = probability_chart(probabilities, self.bank.classes)
        model_times = " · ".join(
            f"{NORMS[norm].short} {1000 * seconds:.1f} ms" for norm, seconds in prediction.seconds.items()
        )
        total = 1000 * sum(prediction.seconds.values())
        width, height = upload.size
        input_note = (
            f"**Your image:** {width} × {height} {upload.format} ({upload.mode}).  \n"
            f"**{FIT_MODES[fit]}:** {FIT_DESCRIPTIONS[fit]}."
            + ("" if views == "single" else f"  \n**Averaged over {len(stack)} views:** {VIEW_MODES[views]}.")
        )
        threads = torch.get_num_threads()
        timing = (
            f"**Time:** {model_times}: **{total:.1f} ms** for {_count(len(prediction.seconds))}, plus "
            f"{1000 * prepare_seconds:.1f} ms to decode and resize the image (CPU, {threads} thread"
            f"{'s' if threads > 1 else ''})."
        )
        state = {norm: p.tolist() for norm, p in probabilities.items()}
        return {
            "preview": image_html(pixels, PREVIEW, "the 32 × 32 pixels the models receive"),
            **self.labels(state, top_k),
            "chart": chart,
            "verdict": self.verdict(probabilities),
            "input_note": input_note,
            "timing": timing,
            "pixels": pixels,
            "probabilities": state,
        }

    def explain(self, pixels: np.ndarray | None, layer: Any, opacity: Any, target: Any) -> dict[str, Any]:
        """Grad-CAM overlays, one per norm (empty for an unavailable model), and the class each one explains.

        Plain values only: an image returned as a component (to change its label) would make Gradio
        build a new component and its configuration for every call.
        """
        if pixels is None:
            return {**dict.fromkeys(CAMS.values(), ""), CAM_NOTE: ""}
        pixels = np.asarray(pixels, dtype=np.uint8)
        try:
            layer = int(layer)
            target = int(target)
            opacity = float(opacity)
        except (TypeError, ValueError):
            raise gr.Error("Layer, class and opacity must be numbers.", title="Invalid option") from None
        classes = self.bank.classes
        outputs: dict[str, Any] = {}
        notes = []
        for norm, name in CAMS.items():
            loaded = self.bank.models.get(norm)
            if loaded is None:
                outputs[name] = ""
                notes.append(f"{NORMS[norm].title} is unavailable")
                continue
            index = min(max(layer, 0), len(loaded.network.features) - 1)
            chosen = None if target == TOP_CLASS else int(np.clip(target, 0, len(classes) - 1))
            cam, explained = grad_cam(loaded.network, loaded.input(pixels), index, chosen)
            notes.append(f"Where {loaded.title} looks for “{classes[explained]}”")
            outputs[name] = image_html(overlay(pixels, cam, opacity), GRADCAM,
                                       f"where {loaded.title} looks for {classes[explained]}")
        outputs[CAM_NOTE] = " · ".join(notes)
        return outputs

    def layer_choices(self) -> list[tuple[str, int]]:
        return [(layer.label, layer.index) for layer in self.layers]

    # ---- Mistakes -------------------------------------------------------------------------

    def agreement_dropdown(self, norm: str) -> dict[str, gr.Dropdown]:
        if self.mistakes is None or norm not in self.mistakes.norms:
            return {"others": gr.Dropdown(choices=[("any", ANY)], value=ANY)}
        return {"others": gr.Dropdown(choices=agreement_choices(self.mistakes.norms, norm), value=ANY)}

    def browse(self, norm: str, true_class: Any, predicted_class: Any, others: Any, count: Any) -> dict[str, Any]:
        """Gallery tiles ``(image, caption)``, a one-line summary, and the row behind each tile."""
        mistakes = self.mistakes
        if mistakes is None:
            return {"gallery": [], "summary": "", "rows": []}
        if norm not in mistakes.norms:
            raise gr.Error(f"The mistakes file has no {norm_title(norm)} predictions.", title="No data")
        descriptions = {value: text for text, value in agreement_choices(mistakes.norms, norm)}
        others = others if others in descriptions else ANY
        true_index = _class_filter(true_class, mistakes.classes)
        predicted_index = _class_filter(predicted_class, mistakes.classes)
        rows = select(mistakes, norm, true_index, predicted_index, others)
        shown = rows[: max(1, int(count or 1))]
        tiles = [(png_file(mistakes.images[row]), caption(mistakes, row, norm)) for row in shown]
        filters = [f"{norm_short(norm)} wrong" if others == ANY else descriptions[others]]
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
        return {"gallery": tiles, "summary": summary, "rows": shown.tolist()}

    def inspect(self, rows: list[int] | None, evt: gr.SelectData) -> dict[str, Any]:
        """The clicked tile with every model's probabilities."""
        mistakes = self.mistakes
        nothing = {"picked": None, "picked_text": "", "picked_chart": ""}
        if mistakes is None or not rows or evt.index is None:
            return nothing
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not 0 <= int(index) < len(rows):
            return nothing
        row = rows[int(index)]
        label = int(mistakes.labels[row])
        probabilities = {norm: mistakes.probabilities[row, i] for i, norm in enumerate(mistakes.norms)}
        lines = [f"**Test image #{int(mistakes.test_index[row])}** · true class: **{mistakes.classes[label]}**", ""]
        for i, norm in enumerate(mistakes.norms):
            predicted = int(mistakes.predicted[row, i])
            mark = "✓" if predicted == label else "✗"
            p = mistakes.probabilities[row, i]
            lines.append(
                f"- {mark} {norm_title(norm)}: {mistakes.classes[predicted]} ({p[predicted]:.0%}; "
                f"true class {p[label]:.0%})"
            )
        chart = probability_chart(probabilities, mistakes.classes, true_class=label)
        return {"picked": png_file(mistakes.images[row]), "picked_text": "\n".join(lines), "picked_chart": chart}
