"""An experiment on every seed's models: the mean of each measured number, and its spread.

``over_seeds`` runs a measurement once per seed and returns the first seed's layout with
every number replaced by its mean over seeds, a ``std`` tree of the same shape (sample
standard deviation; 0 with one seed) and the seeds used, so tables and figures can show
mean ± std and error bars.
"""

from collections.abc import Callable
from typing import Any

from torch import nn

from artifacts.lab import spread_over_seeds
from training.lab.context import LabContext
from training.statistics import pairwise_differences, summarize


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _combine(values: list[Any]) -> tuple[Any, Any]:
    """(mean, std) trees of equally shaped trees; what is not a number is taken from the first."""
    first = values[0]
    if isinstance(first, dict):
        means, spreads = {}, {}
        for key in first:
            means[key], spreads[key] = _combine([value[key] for value in values])
        return means, spreads
    if isinstance(first, list) and first and all(_is_number(v) for v in first):
        pairs = [_combine([value[i] for value in values]) for i in range(len(first))]
        return [mean for mean, _ in pairs], [std for _, std in pairs]
    if _is_number(first):
        summary = summarize(values)
        return summary.mean, summary.std
    return first, None


def mean_and_spread(measured: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One measurement per seed -> their mean, with ``std``, ``setup.seeds`` and each seed's own
    numbers (``per_seed``, by seed), from which intervals for differences are computed."""
    seeds = list(measured)
    results = [{key: value for key, value in measured[seed].items() if key != "setup"} for seed in seeds]
    means, spreads = _combine(results)
    setup = {**measured[seeds[0]]["setup"], "seeds": seeds}
    return {"setup": setup, **means, "std": spreads, "per_seed": dict(zip(map(str, seeds), results, strict=True))}


def differences_over_seeds(measured: dict[str, Any], *path: str) -> dict[str, Any]:
    """Every two norms' difference in the number at ``path + (norm,)``, over the seeds, with its 95% interval."""
    values: dict[str, list[float]] = {}
    for results in measured["per_seed"].values():
        node = results
        for key in path:
            node = node[key]
        for norm, value in node.items():
            values.setdefault(norm, []).append(value)
    return pairwise_differences(values)


def over_seeds(context: LabContext, measure: Callable[[dict[str, nn.Module]], dict[str, Any]]) -> dict[str, Any]:
    """``measure(models)`` for every seed's BN, GN and LN models, combined."""
    measured = {}
    for seed, models in context.models_by_seed.items():
        print(f"  seed {seed}", flush=True)
        measured[seed] = measure(models)
    return mean_and_spread(measured)


def spread(measured: dict[str, Any], *path: Any) -> float:
    """The std beside the number at ``path``, for an error bar: 0 when measured on one seed."""
    return spread_over_seeds(measured, *path) or 0.0


def seeds_note(measured: dict[str, Any]) -> str:
    seeds = measured.get("setup", {}).get("seeds", [0])
    return f"mean over seeds {', '.join(map(str, seeds))}, bars ±1 std" if len(seeds) > 1 else "seed 0"
