"""The Lab tab: what ``python -m training.lab`` measured, and two live demos on one image.

The measured results are read from ``checkpoints/lab/`` (JSON for the tables, PNG for
the plots); a missing or damaged file leaves its section with the command that makes it.
The demos run the shipped models: corruptions from ``model.corruptions``, and the image
in random batches of other test images, where only BatchNorm in training mode listens
to its companions.
"""

import json
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

from model import NORM_COLOURS, NORM_TITLES
from model.corruptions import CORRUPTION_TITLES, CORRUPTIONS, corrupt
from model.coupling import probabilities_with_companions, train_mode_copy
from webapp.charts import companion_chart, probability_chart
from webapp.inference import ModelBank, predict
from webapp.output_files import png_file
from webapp.preprocess import enlarge
from webapp.training_report import markdown_table

EXPERIMENTS: dict[str, str] = {
    "batch_size": "Batch size",
    "coupling": "Batch coupling",
    "robustness": "Robustness to corruptions",
    "calibration": "Calibration",
    "cost": "Cost",
}
UPLOADED = "uploaded"
COMPANION_BATCHES = 12


def read_lab(folder: Path) -> dict[str, dict[str, Any]]:
    """{experiment: results} for every well-formed ``<experiment>.json`` in ``folder``."""
    found = {}
    for name in EXPERIMENTS:
        try:
            results = json.loads((Path(folder) / f"{name}.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(results, dict) and results.get("experiment") == name and "setup" in results:
            found[name] = results
    return found


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _rates(base_lr: Any) -> str:
    if isinstance(base_lr, dict):
        return "(" + ", ".join(f"{lr} for {NORM_TITLES.get(n, n)}" for n, lr in base_lr.items()) + ")"
    return str(base_lr)


def batch_size_markdown(results: dict[str, Any]) -> str:
    setup, runs = results["setup"], results["runs"]
    sizes = setup["batch_sizes"]
    norms = [n for n in NORM_TITLES if any(r["norm"] == n for r in runs.values())]
    rows = [
        [NORM_TITLES[n], *(_pct(runs[f"{n}-{b}"]["test_accuracy"]) if f"{n}-{b}" in runs else "–" for b in sizes)]
        for n in norms
    ]
    return (
        f"Each model trained from scratch on {setup['train_images']:,} training images for {setup['epochs']} "
        f"epochs at each batch size, peak learning rate {_rates(setup['base_lr'])} × batch size / 256; test accuracy "
        f"on {setup['test_images']:,} test images.\n\n" + markdown_table(["", *(f"batch {b}" for b in sizes)], rows)
    )


def coupling_markdown(results: dict[str, Any]) -> str:
    setup, measured = results["setup"], results["results"]
    rows = []
    for norm, modes in measured.items():
        for mode, values in modes.items():
            rows.append([f"{NORM_TITLES[norm]}, {mode} mode", f"{values['mean_max_abs_change']:.4f}",
                         f"{values['largest_change']:.4f}", _pct(values["top_class_flip_rate"])])
    return (
        f"{setup['probes']} test images, each put in {setup['trials']} batches of {setup['batch_size']} with "
        "random other test images. Change = the largest difference of any class probability from the image's "
        "prediction in its first batch.\n\n"
        + markdown_table(["Model", "Mean change", "Largest change", "Top class flips"], rows)
    )


def robustness_markdown(results: dict[str, Any]) -> str:
    summary, clean = results["mean_corrupted_accuracy"], results["clean_accuracy"]
    norms = list(clean)
    rows = [["Clean", *(_pct(clean[n]) for n in norms)]]
    rows += [[CORRUPTION_TITLES.get(name, name), *(_pct(per_norm[n]) for n in norms)]
             for name, per_norm in summary.items()]
    return (
        f"Test accuracy on {results['setup']['test_images']:,} test images, averaged over severities 1-5.\n\n"
        + markdown_table(["Corruption", *(NORM_TITLES[n] for n in norms)], rows)
    )


def calibration_markdown(results: dict[str, Any]) -> str:
    rows = [
        [NORM_TITLES[n], _pct(r["ece"]), _pct(r["accuracy"]), _pct(r["mean_confidence"]), f"{r['nll']:.3f}"]
        for n, r in results["results"].items()
    ]
    return (
        f"On {results['setup']['test_images']:,} test images, {results['setup']['bins']} confidence bins. "
        "Confidence below accuracy means the model is under-confident.\n\n"
        + markdown_table(["Model", "ECE", "Accuracy", "Mean confidence", "NLL"], rows)
    )


def cost_markdown(results: dict[str, Any]) -> str:
    rows = []
    for batch, per_norm in results["results"].items():
        for norm, r in per_norm.items():
            rows.append([
                NORM_TITLES[norm], batch, f"{r['forward_ms']:.1f} ms ({r['forward_vs_bn']:.2f}×)",
                f"{r['train_step_ms']:.1f} ms ({r['train_step_vs_bn']:.2f}×)",
                f"{r['saved_for_backward_mb']:.1f} MB",
            ])
    setup = results["setup"]
    return (
        f"On {setup['device']}, median of {setup['rounds']} interleaved rounds; × is relative to BatchNorm.\n\n"
        + markdown_table(["Model", "Batch", "Forward (eval)", "Forward + backward", "Kept for backward"], rows)
    )


MARKDOWN = {
    "batch_size": batch_size_markdown, "coupling": coupling_markdown, "robustness": robustness_markdown,
    "calibration": calibration_markdown, "cost": cost_markdown,
}


def section_markdown(name: str, results: dict[str, Any] | None) -> str:
    """The table and setup of one experiment, or how to produce it."""
    command = f"`python -m training.lab {name}`"
    if results is None:
        return f"Not measured yet: run {command} to write `checkpoints/lab/{name}.json`."
    try:
        return MARKDOWN[name](results) + f"\n\nRegenerate with {command}."
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"`checkpoints/lab/{name}.json` is not in the expected form; regenerate it with {command}."


class LabDemo:
    """The live demos: corruptions of one image, and the image among random batch companions."""

    def __init__(self, bank: ModelBank, examples: dict[str, np.ndarray], pool: np.ndarray | None) -> None:
        self.bank = bank
        self.examples = examples  # class name -> (32, 32, 3) uint8
        # Companions come from the test images the app ships (the mistakes file), else the examples.
        if pool is None or len(pool) < 2:
            pool = np.stack(list(examples.values())) if examples else np.zeros((0, 32, 32, 3), np.uint8)
        self.pool = pool
        self.train_copies = {norm: train_mode_copy(loaded.network) for norm, loaded in bank.models.items()}

    def source_choices(self) -> list[tuple[str, str]]:
        return [("your image (Classify tab)", UPLOADED), *[(f"example: {name}", name) for name in self.examples]]

    def pixels(self, source: Any, uploaded: Any) -> np.ndarray | None:
        if source == UPLOADED:
            return None if uploaded is None else np.asarray(uploaded, dtype=np.uint8)
        if source in self.examples:
            return self.examples[source]
        raise gr.Error(f"Unknown image {source!r}; pick one from the list.", title="Unknown image")

    def corrupted(self, source: Any, uploaded: Any, corruption: Any, severity: Any) -> tuple:
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
            return None, "", "Upload an image in the Classify tab first, or pick an example above."
        if not self.bank.models:
            raise gr.Error("No model is available; see the message at the top of the page.", title="No models")
        images = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None]
        # A fixed seed: moving the slider back and forth shows the same noise.
        changed = corrupt(images, corruption, level, torch.Generator().manual_seed(0))[0].permute(1, 2, 0).numpy()
        prediction = predict(self.bank, changed)
        clean = predict(self.bank, pixels)
        classes = self.bank.classes
        lines = []
        for norm, probabilities in prediction.probabilities.items():
            before = clean.top(norm)
            after = int(probabilities.argmax())
            verdict = "keeps" if after == before else f"changes its answer to **{classes[after]}**"
            lines.append(
                f"**{NORM_TITLES[norm]}** {verdict} (“{classes[before]}”: "
                f"{_pct(clean.probabilities[norm][before])} → {_pct(probabilities[before])})"
            )
        title = "no corruption" if level == 0 else f"{CORRUPTION_TITLES[corruption]}, severity {level}"
        note = f"**{title}.** " + " · ".join(lines)
        return png_file(enlarge(changed, 8)), probability_chart(prediction.probabilities, classes), note

    def companions(self, source: Any, uploaded: Any, batch_size: Any, draw: Any) -> tuple[str, str]:
        """A chart of the image's probability in random batches, per model, and a summary."""
        try:
            size = int(np.clip(round(float(batch_size)), 2, 64))
            seed = int(draw or 0)
        except (TypeError, ValueError):
            raise gr.Error("Batch size must be a number from 2 to 64.", title="Invalid batch size") from None
        pixels = self.pixels(source, uploaded)
        if pixels is None:
            return "", "Upload an image in the Classify tab first, or pick an example above."
        if not self.bank.models or len(self.pool) < 1:
            raise gr.Error("No model or companion images are available.", title="Demo unavailable")
        clean = predict(self.bank, pixels)
        mean = np.mean(list(clean.probabilities.values()), axis=0)
        tracked = int(mean.argmax())
        generator = torch.Generator().manual_seed(seed)
        picks = [torch.randint(0, len(self.pool), (size - 1,), generator=generator).numpy()
                 for _ in range(COMPANION_BATCHES)]
        series: dict[str, tuple[str, bool, list[float]]] = {}
        lines = []
        with torch.no_grad():
            for norm, loaded in self.bank.models.items():
                image = loaded.normalize(pixels)[0]
                runs = torch.stack([
                    probabilities_with_companions(self.train_copies[norm], image, loaded.normalize(self.pool[pick]))
                    for pick in picks
                ])
                values = runs[:, tracked].tolist()
                series[f"{NORM_TITLES[norm]}, train mode"] = (NORM_COLOURS[norm], False, values)
                flips = int((runs.argmax(1) != clean.top(norm)).sum())
                lines.append(
                    f"**{NORM_TITLES[norm]}** (train mode): {_pct(min(values))}–{_pct(max(values))}, top class "
                    f"differs from eval mode in {flips} of {COMPANION_BATCHES} batches"
                )
            if "bn" in clean.probabilities:
                eval_value = float(clean.probabilities["bn"][tracked])
                series["BatchNorm, eval mode"] = (NORM_COLOURS["bn"], True, [eval_value] * COMPANION_BATCHES)
        note = (
            f"The image in {COMPANION_BATCHES} batches of {size} (itself and {size - 1} random test images).  \n"
            + "  \n".join(lines)
        )
        return companion_chart(series, self.bank.classes[tracked]), note


def corruption_choices() -> list[tuple[str, str]]:
    return [(title, name) for name, title in CORRUPTION_TITLES.items()]
