"""The Lab tab's content: what ``python -m training.lab`` measured, and two live demos on one image.

The measured results are read from ``checkpoints/lab/`` (``artifacts.lab``: JSON for the
tables, PNG for the plots); a missing or damaged file leaves its section with the command
that makes it. The demos run the shipped models and the lab's own probes: corruptions
(``probes.corruptions``), and the image in random batches of other test images
(``probes.coupling.companion_sweep``), where only BatchNorm in training mode listens to
its companions. The handlers return ``{output name: value}`` like ``webapp.callbacks``.
"""

from typing import Any

import gradio as gr
import numpy as np
import torch

from artifacts.folder import LabFolder
from artifacts.lab import EXPERIMENTS, markdown_table, read_lab_results
from model import NORMS
from probes.corruptions import CORRUPTION_TITLES, CORRUPTIONS, corrupt
from probes.coupling import companion_sweep, train_mode_copy
from webapp.charts import companion_chart, probability_chart
from webapp.inference import ModelBank
from webapp.output_files import png_file
from webapp.preprocess import enlarge

UPLOADED = "uploaded"
COMPANION_BATCHES = 12
COMPANION_SIZE = 4  # the batch size the demo starts with


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def read_lab(folder: LabFolder) -> dict[str, dict[str, Any]]:
    """{experiment: results} for every well-formed result file in the lab folder."""
    found = {name: read_lab_results(folder, name) for name in EXPERIMENTS}
    return {name: results for name, results in found.items() if results is not None}


def section_markdown(name: str, results: dict[str, Any] | None) -> str:
    """The table and setup of one experiment, or how to produce it."""
    command = f"`python -m training.lab {name}`"
    if results is None:
        return f"Not measured yet: run {command} to write `checkpoints/lab/{name}.json`."
    try:
        setup, headers, rows = EXPERIMENTS[name].table(results)
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"`checkpoints/lab/{name}.json` is not in the expected form; regenerate it with {command}."
    return f"{setup}\n\n{markdown_table(headers, rows)}\nRegenerate with {command}."


class LabDemo:
    """The live demos: corruptions of one image, and the image among random batch companions."""

    def __init__(self, bank: ModelBank, examples: dict[str, np.ndarray], pool: np.ndarray | None) -> None:
        self.bank = bank
        self.examples = examples  # class name -> (32, 32, 3) uint8
        # Companions come from the test images the app ships (the mistakes file), else the examples.
        if pool is None or len(pool) < 2:
            pool = np.stack(list(examples.values())) if examples else np.zeros((0, 32, 32, 3), np.uint8)
        self.pool = torch.from_numpy(np.ascontiguousarray(pool)).permute(0, 3, 1, 2)  # uint8 (N, 3, 32, 32)
        self.train_copies = {norm: train_mode_copy(loaded.network) for norm, loaded in bank.models.items()}

    def source_choices(self) -> list[tuple[str, str]]:
        return [("your image (Classify tab)", UPLOADED), *[(f"example: {name}", name) for name in self.examples]]

    def pixels(self, source: Any, uploaded: Any) -> np.ndarray | None:
        if source == UPLOADED:
            return None if uploaded is None else np.asarray(uploaded, dtype=np.uint8)
        if source in self.examples:
            return self.examples[source]
        raise gr.Error(f"Unknown image {source!r}; pick one from the list.", title="Unknown image")

    def corrupted(self, source: Any, uploaded: Any, corruption: Any, severity: Any) -> dict[str, Any]:
        """The corrupted image (enlarged), every model's probabilities for it, and a note."""
        if corruption not in CORRUPTIONS:
            raise gr.Error(f"Unknown corruption {corruption!r}; choose one of: {', '.join(CORRUPTIONS)}.",
                           title="Unknown corruption")
        try:
            level = int(np.clip(round(float(severity)), 0, 5))
        except (TypeError, ValueError):
            raise gr.Error("Severity must be a number from 0 to 5.", title="Invalid severity") from None
        pixels = self.pixels(source, uploaded)
        if pixels is None:
            return {"corrupted": None, "corrupted_chart": "",
                    "corrupted_note": "Upload an image in the Classify tab first, or pick an example above."}
        if not self.bank.models:
            raise gr.Error("No model is available; see the message at the top of the page.", title="No models")
        images = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None]
        # A fixed seed: moving the slider back and forth shows the same noise.
        changed = corrupt(images, corruption, level, torch.Generator().manual_seed(0))[0].permute(1, 2, 0).numpy()
        prediction = self.bank.predict(changed)
        clean = self.bank.predict(pixels)
        classes = self.bank.classes
        lines = []
        for norm, probabilities in prediction.probabilities.items():
            before = clean.top(norm)
            after = int(probabilities.argmax())
            verdict = "keeps" if after == before else f"changes its answer to **{classes[after]}**"
            lines.append(
                f"**{NORMS[norm].title}** {verdict} (“{classes[before]}”: "
                f"{_pct(clean.probabilities[norm][before])} → {_pct(probabilities[before])})"
            )
        title = "no corruption" if level == 0 else f"{CORRUPTION_TITLES[corruption]}, severity {level}"
        note = f"**{title}.** " + " · ".join(lines)
        return {"corrupted": png_file(enlarge(changed, 8)),
                "corrupted_chart": probability_chart(prediction.probabilities, classes), "corrupted_note": note}

    def companions(self, source: Any, uploaded: Any, batch_size: Any, draw: Any) -> dict[str, str]:
        """A chart of the image's probability in random batches, per model, and a summary."""
        try:
            size = int(np.clip(round(float(batch_size)), 2, 64))
            seed = int(draw or 0)
        except (TypeError, ValueError):
            raise gr.Error("Batch size must be a number from 2 to 64.", title="Invalid batch size") from None
        pixels = self.pixels(source, uploaded)
        if pixels is None:
            return {"companion_plot": "", "companion_note": "Upload an image in the Classify tab first, or pick an "
                    "example above."}
        if not self.bank.models or len(self.pool) < 1:
            raise gr.Error("No model or companion images are available.", title="Demo unavailable")
        clean = self.bank.predict(pixels)
        mean = np.mean(list(clean.probabilities.values()), axis=0)
        tracked = int(mean.argmax())
        image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).permute(2, 0, 1)
        series: dict[str, tuple[str, bool, list[float]]] = {}
        lines = []
        for norm in self.bank.models:
            # The same companions for every model: each model's line is the same batches.
            generator = torch.Generator().manual_seed(seed)
            runs = companion_sweep(self.train_copies[norm], image, self.pool, COMPANION_BATCHES, size, generator)
            values = runs[:, tracked].tolist()
            series[f"{NORMS[norm].title}, train mode"] = (NORMS[norm].colour, False, values)
            flips = int((runs.argmax(1) != clean.top(norm)).sum())
            lines.append(
                f"**{NORMS[norm].title}** (train mode): {_pct(min(values))}–{_pct(max(values))}, top class "
                f"differs from eval mode in {flips} of {COMPANION_BATCHES} batches"
            )
        if "bn" in clean.probabilities:
            eval_value = float(clean.probabilities["bn"][tracked])
            series["BatchNorm, eval mode"] = (NORMS["bn"].colour, True, [eval_value] * COMPANION_BATCHES)
        note = (
            f"The image in {COMPANION_BATCHES} batches of {size} (itself and {size - 1} random test images).  \n"
            + "  \n".join(lines)
        )
        return {"companion_plot": companion_chart(series, self.bank.classes[tracked]), "companion_note": note}


def corruption_choices() -> list[tuple[str, str]]:
    return [(title, name) for name, title in CORRUPTION_TITLES.items()]
