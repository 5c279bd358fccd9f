"""Test accuracy against batch size: does BN need large batches while GN and LN do not?

Each norm is trained from scratch at each batch size with the same images, epochs and
one-cycle schedule; the peak learning rate scales linearly with the batch size
(Goyal et al., 2017) from each norm's rate at the recipe's batch size:
``lr = ARCHITECTURES[arch].lr[norm] * batch_size / TrainConfig(arch=arch).batch_size``, and Muon's rate for the
filters (where the recipe uses Muon) with it, so every weight moves as far per epoch at every batch size: Muon's
step has a fixed size, so its rate sets how far the filters turn per step. To fit a laptop CPU this
trains on a subset of the training set for a few epochs, and says so in its results.

Every point is trained with several seeds (``--seeds``, default 3): the results hold each
run, each point's mean and std, and at each batch size every pair of norms' difference
with its 95% interval. Finished runs are kept in the results file and skipped when the
command is run again (a sweep over more seeds reuses one over fewer), and each run keeps
per-epoch resume state, so an interrupted sweep continues.
"""

import json
from pathlib import Path
from typing import Any

import torch

from artifacts.folder import LabFolder
from artifacts.lab import write_lab_results
from model import ARCHITECTURES, DEFAULT_ARCH, NORMS, build_model, count_parameters, network_fingerprint
from training.config import TrainConfig
from training.data import Split
from training.figures import pyplot
from training.lab.context import LabContext
from training.loop import train
from training.statistics import pairwise_differences, summarize

BATCH_SIZES = (2, 8, 32, 128)
SEEDS = 3
NAME = "batch_size"
# Setup entries that are not settings: a sweep over more seeds extends one over fewer.
NOT_SETTINGS = ("seconds", "seeds")


def run_key(norm: str, batch_size: int, seed: int) -> str:
    return f"{norm}-{batch_size}-seed{seed}"


def run(context: LabContext) -> dict[str, Any]:
    args = context.args
    return measure(context.data["train"], context.data["test"], context.device, args.output_dir, args.state_dir,
                   batch_sizes=tuple(args.batch_sizes), train_images=args.train_images, epochs=args.epochs,
                   seeds=tuple(range(args.seeds)), restart=args.restart, progress=not args.no_progress)


def measure(train_split: Split, test_split: Split, device: torch.device, output_dir: Path, state_dir: Path,
            batch_sizes: tuple[int, ...] = BATCH_SIZES, train_images: int = 10_000, epochs: int = 5,
            arch: str = DEFAULT_ARCH, seeds: tuple[int, ...] = tuple(range(SEEDS)), restart: bool = False,
            progress: bool = True) -> dict[str, Any]:
    # The fingerprint tells versions of one architecture apart, so a sweep of an earlier
    # version is not taken for this one's.
    network = build_model(arch, "bn")
    # The training recipe too (crop padding, weight decay, ...): runs made under another
    # recipe measure something else.
    per_run = {"arch", "norm", "epochs", "batch_size", "lr", "muon_lr", "seed", "train_subset"}
    default = TrainConfig(arch=arch)
    recipe = {key: value for key, value in default.as_dict().items() if key not in per_run}
    setup = {"arch": arch, "network": network_fingerprint(network), "parameters": count_parameters(network),
             "train_images": train_images, "epochs": epochs, "base_lr": dict(ARCHITECTURES[arch].lr),
             "base_batch_size": default.batch_size,
             "lr_rule": f"base_lr[norm] * batch_size / {default.batch_size}", "batch_sizes": list(batch_sizes),
             **({"base_muon_lr": default.muon_lr} if default.muon_lr else {}),  # scaled as the rates are
             "recipe": recipe, "test_images": len(test_split)}
    lab = LabFolder(output_dir)
    runs, other_setup = _finished_runs(lab.results(NAME), setup)
    # Resume state saved under another setup (say, another test set) would hand back that
    # setup's results, so such a sweep starts every run afresh.
    restart = restart or other_setup
    if restart:
        runs = {}
    # Seed by seed, so that a sweep cut short has whole seeds to show.
    for seed in seeds:
        for batch_size in batch_sizes:
            for norm in NORMS:
                key = run_key(norm, batch_size, seed)
                if key in runs:
                    print(f"  {key}: already measured, {runs[key]['test_accuracy']:.2%}")
                    continue
                config = TrainConfig(arch=arch, norm=norm, epochs=epochs, batch_size=batch_size, seed=seed,
                                     lr=ARCHITECTURES[arch].lr[norm] * batch_size / default.batch_size,
                                     muon_lr=default.muon_lr * batch_size / default.batch_size,
                                     train_subset=train_images)
                result = train(config, train_split, test_split, device, state_dir / key, restart=restart,
                               progress=progress)
                last = result.history[-1]
                runs[key] = {
                    "norm": norm, "batch_size": batch_size, "seed": seed, "lr": config.lr, "muon_lr": config.muon_lr,
                    "train_accuracy": last["train_accuracy"], "test_accuracy": last["test_accuracy"],
                    "seconds": sum(h["seconds"] for h in result.history),
                }
                # Written after every run, so an interrupted sweep keeps what it finished.
                write_lab_results(lab, NAME, sweep_results(setup, runs, batch_sizes))
    return sweep_results(setup, runs, batch_sizes)


def sweep_results(setup: dict[str, Any], runs: dict[str, Any], batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """What the results file holds: the setup (with the seeds trained so far), every run, and the points."""
    seeds = sorted({run["seed"] for run in runs.values()})
    return {"setup": {**setup, "seeds": seeds}, "runs": runs, **summarize_points(runs, batch_sizes)}


def summarize_points(runs: dict[str, Any], batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Each point's test accuracy as mean and std over its seeds, and at each batch size the
    difference between every two norms with its 95% interval (Welch; none with one seed a side)."""
    accuracies = {norm: {b: [r["test_accuracy"] for r in runs.values() if r["norm"] == norm and r["batch_size"] == b]
                         for b in batch_sizes} for norm in NORMS}
    points = {norm: {str(b): vars(summarize(values)) for b, values in per_size.items() if values}
              for norm, per_size in accuracies.items()}
    differences = {str(b): pairwise_differences({norm: accuracies[norm][b] for norm in NORMS})
                   for b in batch_sizes}
    return {"points": points, "differences": differences}


def _finished_runs(path: Path, setup: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The runs a saved sweep with this setup finished, and whether one with another setup was found."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, False
    saved_setup = {key: value for key, value in saved.get("setup", {}).items() if key not in NOT_SETTINGS}
    runs = dict(saved.get("runs", {}))
    # A sweep written before it ran over seeds was one seed, named in its setup and not in its runs.
    if "seed" in saved_setup:
        seed = saved_setup.pop("seed")
        runs = {run_key(r["norm"], r["batch_size"], seed): {**r, "seed": seed} for r in runs.values()}
    if saved_setup != setup:
        return {}, True
    return runs, False


def figure(measured: dict[str, Any]):
    plt = pyplot()
    setup = measured["setup"]
    fig, axis = plt.subplots(figsize=(6.4, 4))
    points = measured["points"]
    for norm in NORMS:
        sizes = sorted(int(b) for b in points.get(norm, {}))
        if sizes:
            means = [100 * points[norm][str(b)]["mean"] for b in sizes]
            spreads = [100 * points[norm][str(b)]["std"] for b in sizes]
            axis.errorbar(sizes, means, yerr=spreads, fmt="o-", capsize=3, color=NORMS[norm].colour,
                          label=NORMS[norm].title)
    axis.set_xscale("log", base=2)
    axis.set_xticks(setup["batch_sizes"], [str(b) for b in setup["batch_sizes"]])
    axis.set_xlabel("batch size (learning rate scaled linearly)")
    axis.set_ylabel("test accuracy (%)")
    seeds = setup.get("seeds", [0])
    spread = f"mean over {len(seeds)} seeds, bars ±1 std" if len(seeds) > 1 else "one seed"
    axis.set_title(f"Batch size: {setup['train_images']:,} training images, {setup['epochs']} epochs ({spread})",
                   fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    return fig
