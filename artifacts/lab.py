"""The lab's experiments, each registered once, and their result files ``lab/<name>.json`` (+ ``.png``).

A record holds what both sides need: the title, the module that runs it and draws its
figure (``python -m training.lab`` imports it), and how its measured numbers read as a
table (the app's Lab tab shows it). The writer and the reader of the result files sit
side by side below.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from artifacts.atomic import write_bytes, write_json
from artifacts.folder import LabFolder
from model import NORMS, norm_title
from probes.corruptions import CORRUPTION_TITLES

Table = tuple[str, list[str], list[list[str]]]  # a sentence on the setup, headers, rows


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def spread_over_seeds(results: dict[str, Any], *path: Any) -> float | None:
    """The std over seeds beside the number at ``path``; None unless it was measured on several seeds."""
    if len(results.get("setup", {}).get("seeds", [])) < 2:
        return None
    node: Any = results.get("std")
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node if isinstance(node, (int, float)) else None


def _pct_spread(value: float, std: float | None) -> str:
    return _pct(value) if std is None else f"{100 * value:.1f} ± {100 * std:.1f}%"


def _seeds_text(results: dict[str, Any]) -> str:
    seeds = results.get("setup", {}).get("seeds", [])
    return f" Mean ± std over seeds {', '.join(map(str, seeds))}." if len(seeds) > 1 else ""


def _rates(base_lr: Any) -> str:
    if isinstance(base_lr, dict):
        return "(" + ", ".join(f"{lr} for {norm_title(n)}" for n, lr in base_lr.items()) + ")"
    return str(base_lr)


def batch_size_table(results: dict[str, Any]) -> Table:
    setup, points = results["setup"], results.get("points")
    sizes = [str(b) for b in setup["batch_sizes"]]
    if points is None:  # written before the sweep ran over seeds: one run per point
        points = {}
        for run in results.get("runs", {}).values():
            points.setdefault(run["norm"], {})[str(run["batch_size"])] = {
                "mean": run["test_accuracy"], "std": 0.0, "n": 1}

    def point(norm: str, size: str) -> str:
        if size not in points.get(norm, {}):
            return "–"
        summary = points[norm][size]
        return _pct_spread(summary["mean"], summary["std"] if summary["n"] > 1 else None)

    rows = [[norm_title(n), *(point(n, b) for b in sizes)] for n in NORMS if points.get(n)]
    for pair in ("bn-gn", "bn-ln", "gn-ln"):
        per_size = [results.get("differences", {}).get(b, {}).get(pair) for b in sizes]
        if any(d is not None and d["low"] is not None for d in per_size):
            first, second = pair.split("-")
            rows.append([f"{NORMS[first].short} − {NORMS[second].short}",
                         *(difference_text(d) for d in per_size)])
    seeds = setup.get("seeds", [0])
    recipe = setup.get("recipe", {})  # the levers it names were set; the others were off (random flips, no EMA)
    flips = {"alternate": "alternating flips", "none": "no flips"}.get(recipe.get("flips"), "random flips")
    average = f"an EMA of the weights (decay {recipe['ema_decay']})" if recipe.get("ema_decay") else "no EMA"
    start = ", the whitening start" if recipe.get("whiten_init") else ""
    base_batch = setup.get("base_batch_size", 256)  # the rates' batch size; sweeps before it was recorded used 256
    setup_text = (
        f"The `{setup.get('arch', 'residual')}` network with {flips}{start} and {average}: "
        f"each model trained from scratch on {setup['train_images']:,} training images for {setup['epochs']} "
        f"epochs at each batch size, peak learning rate {_rates(setup['base_lr'])} × batch size / {base_batch}"
        + (f", the filters' with Muon at {setup['base_muon_lr']} × batch size / {base_batch}"
           if setup.get("base_muon_lr") else "")
        + "; test accuracy "
        f"on {setup['test_images']:,} test images"
        + (f", mean ± std over seeds {', '.join(map(str, seeds))}. The differences are in points, with their 95% "
           "intervals; a difference is detected when its interval excludes 0." if len(seeds) > 1 else ", one seed.")
    )
    return setup_text, ["", *(f"batch {b}" for b in sizes)], rows


def difference_text(difference: dict[str, Any] | None, bold_when_detected: bool = False) -> str:
    """A difference of accuracies in points, "+1.4 (+0.5 to +2.3)" with its interval when it has one."""
    if difference is None:
        return "–"

    def points(value: float) -> str:
        return f"{100 * value:+.1f}".replace("-", "−")

    text = points(difference["estimate"])
    if difference.get("low") is None:
        return text
    text = f"{text} ({points(difference['low'])} to {points(difference['high'])})"
    return f"**{text}**" if bold_when_detected and difference.get("detected") else text


def markdown_table(headers: list[str], rows: list[list[str]], right: int = 1) -> str:
    """A Markdown table, as the app and the README show them; columns from ``right`` on are numbers, aligned right."""
    align = ["---"] * right + ["---:"] * (len(headers) - right)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def coupling_table(results: dict[str, Any]) -> Table:
    setup, measured = results["setup"], results["results"]
    per_seed = results.get("per_seed", {})
    rows = []
    for norm, modes in measured.items():
        for mode, values in modes.items():
            change_std = spread_over_seeds(results, "results", norm, mode, "mean_max_abs_change")
            # The largest single change over every seed's models (the mean keeps each seed's largest).
            largest = max([values["largest_change"]] + [
                seed["results"][norm][mode]["largest_change"] for seed in per_seed.values()
                if norm in seed.get("results", {}) and mode in seed["results"][norm]])
            rows.append([f"{norm_title(norm)}, {mode} mode",
                         f"{values['mean_max_abs_change']:.4f}" + (f" ± {change_std:.4f}" if change_std else ""),
                         f"{largest:.4f}",
                         _pct_spread(values["top_class_flip_rate"],
                                     spread_over_seeds(results, "results", norm, mode, "top_class_flip_rate"))])
    setup_text = (
        f"{setup['probes']} test images, each put in {setup['trials']} batches of {setup['batch_size']} with "
        "random other test images. Change = the largest difference of any class probability from the image's "
        "prediction in its first batch; the largest change is the largest over every image, batch and seed."
        + _seeds_text(results)
    )
    return setup_text, ["Model", "Mean change", "Largest change", "Top class flips"], rows


def robustness_table(results: dict[str, Any]) -> Table:
    summary, clean = results["mean_corrupted_accuracy"], results["clean_accuracy"]
    norms = list(clean)
    rows = [["Clean", *(_pct_spread(clean[n], spread_over_seeds(results, "clean_accuracy", n)) for n in norms)]]
    rows += [[CORRUPTION_TITLES.get(name, name),
              *(_pct_spread(per_norm[n], spread_over_seeds(results, "mean_corrupted_accuracy", name, n))
                for n in norms)]
             for name, per_norm in summary.items()]
    if "average_corrupted_accuracy" in results:
        average = results["average_corrupted_accuracy"]
        rows.append(["Average of the corruptions",
                     *(_pct_spread(average[n], spread_over_seeds(results, "average_corrupted_accuracy", n))
                       for n in norms)])
    setup_text = (f"Test accuracy on {results['setup']['test_images']:,} test images, averaged over severities 1-5."
                  + _seeds_text(results))
    return setup_text, ["Corruption", *(norm_title(n) for n in norms)], rows


def calibration_table(results: dict[str, Any]) -> Table:
    rows = [
        [norm_title(n), *(_pct_spread(r[key], spread_over_seeds(results, "results", n, key))
                          for key in ("ece", "accuracy", "mean_confidence")), f"{r['nll']:.3f}"]
        for n, r in results["results"].items()
    ]
    setup_text = (
        f"On {results['setup']['test_images']:,} test images, {results['setup']['bins']} confidence bins. "
        "Confidence below accuracy means the model is under-confident." + _seeds_text(results)
    )
    return setup_text, ["Model", "ECE", "Accuracy", "Mean confidence", "NLL"], rows


def cost_table(results: dict[str, Any]) -> Table:
    rows = []
    for batch, per_norm in results["results"].items():
        for norm, r in per_norm.items():
            rows.append([
                norm_title(norm), batch, f"{r['forward_ms']:.1f} ms ({r['forward_vs_bn']:.2f}×)",
                f"{r['train_step_ms']:.1f} ms ({r['train_step_vs_bn']:.2f}×)",
                f"{r['saved_for_backward_mb']:.1f} MB",
            ])
    setup = results["setup"]
    setup_text = f"On {setup['device']}, median of {setup['rounds']} interleaved rounds; × is relative to BatchNorm."
    return setup_text, ["Model", "Batch", "Forward (eval)", "Forward + backward", "Kept for backward"], rows


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    summary: str  # one line, for --help
    module: str  # the module with ``run(context)`` and ``figure(measured)``, imported by python -m training.lab
    table: Callable[[dict[str, Any]], Table]
    open_in_app: bool  # shown unfolded in the Lab tab
    splits: tuple[str, ...]  # the CIFAR-10 splits it reads: "test", and "train" if it trains networks


EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (
        Experiment("batch_size", "Batch size", "train each norm at batch sizes 2, 8, 32, 128 (linear lr scaling)",
                   "training.lab.batch_size", batch_size_table, open_in_app=True, splits=("train", "test")),
        Experiment("coupling", "Batch coupling",
                   "how much an image's prediction moves when its batch companions change",
                   "training.lab.coupling", coupling_table, open_in_app=True, splits=("test",)),
        Experiment("robustness", "Robustness to corruptions",
                   "test accuracy under six corruptions at five severities",
                   "training.lab.robustness", robustness_table, open_in_app=True, splits=("test",)),
        Experiment("calibration", "Calibration", "expected calibration error and reliability diagrams",
                   "training.lab.calibration", calibration_table, open_in_app=False, splits=("test",)),
        Experiment("cost", "Cost", "forward and training-step time and memory of each norm",
                   "training.lab.cost", cost_table, open_in_app=False, splits=()),
    )
}


def write_lab_results(folder: LabFolder, name: str, results: dict[str, Any], figure_png: bytes | None = None) -> None:
    """Write one experiment's results (and its figure), each atomically."""
    results = {"experiment": name, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **results}
    if figure_png is not None:
        write_bytes(folder.figure(name), figure_png)
    write_json(folder.results(name), results)


def read_lab_results(folder: LabFolder, name: str) -> dict[str, Any] | None:
    """One experiment's results, or None if the file is absent, damaged or of another experiment."""
    try:
        results = json.loads(folder.results(name).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(results, dict) and results.get("experiment") == name and "setup" in results:
        return results
    return None
