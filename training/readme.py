"""python -m training.readme: the README's result tables, rebuilt from the files that hold the numbers.

Each table sits between two markers in README.md::

    <!-- generated: results -->
    ...
    <!-- end: results -->

and is rendered here from the checkpoint folder alone (results.json, the grid's folders,
trials.json, lab/*.json): the headline over seeds, the differences between norms, the
network x recipe grid, every trial behind a choice of setting, and the lab's tables (the
same tables the app's Lab tab shows). ``--check`` changes nothing and fails when the
README and the files disagree; the tests run it, so a number cannot drift.
"""

import argparse
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from artifacts.folder import DEFAULT_CHECKPOINT_DIR, CheckpointFolder
from artifacts.lab import EXPERIMENTS, difference_text, markdown_table, read_lab_results
from artifacts.results import read_over_seeds, read_results
from artifacts.trials import read_trials
from model import ARCHITECTURES, DEFAULT_ARCH, NORMS, build_model, count_parameters, network_fingerprint
from training.config import TrainConfig
from training.search.space import changes_from_shipped, trial_configs
from training.statistics import pairwise_differences, prediction_interval

README = Path("README.md")
MARKER = re.compile(r"(<!-- generated: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)
# Options a trial's command names that are not settings of the network or recipe.
NOT_SETTINGS = {"--norm", "--data-dir", "--output-dir", "--state-dir", "--validation", "--no-progress",
                "--record-trial", "--jobs", "--restart"}


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def over_seeds_cell(summary: dict[str, Any] | None) -> str:
    """"85.44 ± 0.17% (3 seeds)", or one run's accuracy; "–" when nothing was measured."""
    if not summary:
        return "–"
    test = summary["test_accuracy"]
    if test["n"] == 1:
        return f"{percent(test['mean'])} (1 seed)"
    return f"{100 * test['mean']:.2f} ± {100 * test['std']:.2f}% ({test['n']} seeds)"


def describes_current_training(metadata: dict[str, Any]) -> bool:
    """Whether a checkpoint was trained on the network its architecture builds today, with its recipe as the
    recipe is today: a cell trained before either changed is "not trained yet", not shown."""
    with torch.device("meta"):
        network = build_model(metadata["arch"], metadata["norm"], metadata.get("gn_groups"))
    today = TrainConfig(arch=metadata["arch"], recipe=metadata.get("recipe", "ours"), norm=metadata["norm"])
    return metadata.get("network") == network_fingerprint(network) and today.describes(metadata)


def results_table(folder: CheckpointFolder) -> str:
    models = read_results(folder.results)
    over_seeds, _ = read_over_seeds(folder.results)
    seeds = max((summary["test_accuracy"]["n"] for summary in over_seeds.values()), default=1)
    headers = ["normalization", "parameters", "epochs", f"test accuracy, mean ± std over {seeds} seeds",
               "each seed's test accuracy", "shipped (seed 0): train / test"]
    rows = []
    for norm, metadata in models.items():
        summary = over_seeds.get(norm, {})
        title = NORMS[norm].title + (f" ({metadata['gn_groups']} groups)" if "gn_groups" in metadata else "")
        runs = " / ".join(f"{100 * run['test_accuracy']:.2f}" for run in summary.get("runs", []))
        mean = summary.get("test_accuracy")
        rows.append([title, f"{metadata['parameters']:,}", str(metadata["epochs"]),
                     f"**{100 * mean['mean']:.2f} ± {100 * mean['std']:.2f}%**" if mean else "–", runs or "–",
                     f"{percent(metadata['train_accuracy'])} / {percent(metadata['test_accuracy'])}"])
    return markdown_table(headers, rows)


def differences_list(folder: CheckpointFolder) -> str:
    _, differences = read_over_seeds(folder.results)
    return "".join(f"- {difference['verdict']}.\n" for difference in differences.values() if "verdict" in difference)


def grid_table(folder: CheckpointFolder) -> str:
    """Network x recipe: the published runs, then every cell trained here, over its seeds."""
    reference = ARCHITECTURES["reference"]
    rows = [[f"reference ({count_parameters(build_model('reference', 'bn')):,} parameters), published: one run "
             "per norm", *(percent(reference.published[norm].test_accuracy) for norm in NORMS)]]
    cells = [("reference", "published", "reference × published recipe, reproduced here"),
             ("reference", "ours", "reference × our recipe"),
             ("residual", "published", "ours with ReLU, as shipped before the search, × published recipe"),
             ("residual-gelu", "published", "ours with GELU, as shipped after trial 7, × published recipe"),
             ("residual-silu", "published", "ours with SiLU, as shipped after trial 42, × published recipe"),
             (DEFAULT_ARCH, "published", f"ours ({count_parameters(build_model(DEFAULT_ARCH, 'bn')):,} parameters) "
                                          "× published recipe"),
             (DEFAULT_ARCH, "ours", "ours × ours (the shipped models)")]
    for arch, recipe, title in cells:
        cell = folder.grid_cell(arch, recipe)
        models = read_results(cell.results)
        over_seeds, _ = read_over_seeds(cell.results)
        current = {norm: describes_current_training(metadata) for norm, metadata in models.items()}
        rows.append([title, *(over_seeds_cell(over_seeds.get(norm)) if current.get(norm) else "not trained yet"
                              for norm in NORMS)])
    return markdown_table(["network × recipe (test accuracy)", *(NORMS[n].title for n in NORMS)], rows)


def reproduction_table(folder: CheckpointFolder) -> str:
    """The published single runs against the reference network trained here with the published recipe, per norm."""
    reference = ARCHITECTURES["reference"]
    cell = folder.grid_cell(reference.name, reference.published_recipe)
    models = read_results(cell.results)
    over_seeds, _ = read_over_seeds(cell.results)
    rows = []
    for norm in NORMS:
        published = reference.published[norm]
        summary = over_seeds.get(norm) if norm in models and describes_current_training(models[norm]) else None
        if not summary:
            rows.append([NORMS[norm].title, percent(published.train_accuracy), percent(published.test_accuracy),
                         "not trained yet", "–", "–", "–", "–"])
            continue
        tests = [run["test_accuracy"] for run in summary["runs"]]
        one_more = prediction_interval(tests)
        target = published.test_accuracy
        if one_more is None:
            verdict = "one seed: no spread yet"
        elif min(tests) <= target <= max(tests):
            verdict = "yes: within our seeds' range"
        elif one_more[0] <= target <= one_more[1]:
            verdict = "yes: outside our seeds' range, within the interval for one run"
        else:
            side = "above" if target > one_more[1] else "below"
            verdict = f"no: {100 * abs(target - summary['test_accuracy']['mean']):.2f} points {side} our mean"
        rows.append([
            NORMS[norm].title, percent(published.train_accuracy), percent(published.test_accuracy),
            over_seeds_cell({"test_accuracy": summary["train_accuracy"]}),
            over_seeds_cell(summary),
            f"{100 * min(tests):.2f} to {100 * max(tests):.2f}%" if len(tests) > 1 else "–",
            f"{100 * one_more[0]:.2f} to {100 * one_more[1]:.2f}%" if one_more else "–",
            verdict,
        ])
    return markdown_table(["normalization", "published train", "published test", "ours: train",
                           "ours: test", "our seeds' test range", "95% interval for one run",
                           "published test within ours?"], rows)


def trial_setting(command: str) -> str:
    """The settings a trial's command changed, e.g. "--lr 0.2 --seed 1"; "the defaults of the time" when none."""
    words, kept, skip = command.split()[3:], [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in NOT_SETTINGS:
            skip = word in ("--norm", "--data-dir", "--output-dir", "--state-dir", "--jobs")
            continue
        kept.append(word)
    return " ".join(kept) or "the defaults of the time"


def trials_table(folder: CheckpointFolder, key: str) -> str:
    """Every recorded trial with ``key`` (validation_accuracy or test_accuracy), one row per command."""
    merged: dict[tuple[str, str], dict[str, str]] = {}  # one row per setting and device, whichever norms ran it
    for trial in read_trials(folder.trials):
        if "study" in trial:  # the search's own trials: `python -m training.search --record` reports them
            continue
        models = trial["models"]
        if not any(key in model for model in models.values()):
            continue
        if key == "test_accuracy" and any("validation_accuracy" in model for model in models.values()):
            continue  # runs on the validation split are in the validation table
        row = merged.setdefault((trial_setting(trial["command"]), trial["device"].split(" (")[0]), {})
        for name, model in models.items():
            norm = model.get("norm", name)  # a record of several seeds names its models "bn-seed0", ...
            if key in model:
                row[norm] = percent(model[key]) if norm not in row else f"{row[norm]}, {percent(model[key])}"
    rows = [[f"`{setting}`", device, *(cells.get(norm, "") for norm in NORMS)]
            for (setting, device), cells in merged.items()]
    return markdown_table(["settings changed (seed 0 unless said)", "device", *(NORMS[n].title for n in NORMS)],
                          rows, right=2)


STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "stopped, waiting to continue"}


def _search_trials(folder: CheckpointFolder, study: str) -> list[dict[str, Any]]:
    return [trial for trial in read_trials(folder.trials) if trial.get("study") == study]


def screening_table(folder: CheckpointFolder) -> str:
    """Every screened candidate, best first: its state, mean and per-norm validation accuracy, what it changes."""
    trials = _search_trials(folder, "screen")
    if not trials:
        return "*No trial screened yet: run `python -m training.search`.*\n"
    retried = {trial["retry_of"] for trial in trials if "retry_of" in trial}
    trials = [trial for trial in trials if trial["trial"] not in retried]  # a stopped trial counts once, as its retry
    states = {state: sum(trial["state"] == state for trial in trials)
              for state in STATE_WORDS}
    models = [model for trial in trials for model in trial["models"].values()]
    counted = ", ".join(f"{count} {STATE_WORDS[state]}" for state, count in states.items() if count)
    lengths = "/".join(str(e) for e in sorted({model.get("epochs") for model in models} - {None}))
    images = "/".join(f"{n:,}" for n in sorted({model.get("train_images") for model in models} - {None}))
    summary = (f"{len(trials)} candidates screened ({counted}), {lengths} epochs each on {images} training "
               "images; validation accuracy at the last epoch run:")
    ranked = sorted(trials, key=lambda trial: (trial["state"] != "COMPLETE", -(trial["value"] or 0.0),
                                               trial["trial"]))
    rows = []
    for trial in ranked:
        models = trial["models"]
        cells = [percent(models[norm]["validation_accuracy"]) if "validation_accuracy" in models.get(norm, {})
                 else "–" for norm in NORMS]
        done = {model.get("epochs_trained") for model in models.values()}
        state = STATE_WORDS.get(trial["state"], trial["state"].lower()) + (
            f" after epoch {min(done)}" if trial["state"] == "PRUNED" else "")
        mean = percent(trial["value"]) if trial["value"] is not None else "–"
        changes = changes_from_shipped(trial["params"], list(NORMS))
        rows.append([str(trial["trial"]), state, changes, mean, *cells])
    headers = ["trial", "state", "changes from the shipped recipe", "mean", *(NORMS[n].short for n in NORMS)]
    return summary + "\n\n" + markdown_table(headers, rows, right=3)


def _mean_std(values: list[float]) -> str:
    """Accuracies (fractions) as "86.17 ± 0.38" in percent, one value as itself, none as "–"."""
    if not values:
        return "–"
    std = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.2f}{std}"


def starting_recipe_validation(folder: CheckpointFolder, start: dict[str, Any], epochs: int,
                               train_images: int) -> dict[str, dict[int, float]]:
    """The validation accuracy per norm and seed of the runs recorded by hand that trained the search's starting
    recipe (``start``: its trial 0's choices) for ``epochs`` on ``train_images``, as the candidates did (a later
    run of a seed replaces an earlier one)."""
    configs = {config.norm: config for config in trial_configs(start, list(NORMS), epochs)} if start else {}
    found: dict[str, dict[int, float]] = {norm: {} for norm in NORMS}
    for trial in read_trials(folder.trials):
        if "study" in trial:
            continue
        for model in trial["models"].values():
            if ("validation_accuracy" in model and model.get("epochs") == epochs
                    and model.get("train_images") == train_images and model["norm"] in configs
                    and configs[model["norm"]].describes(model)):
                found[model["norm"]][model.get("seed", 0)] = model["validation_accuracy"]
    return found


def confirmation_table(folder: CheckpointFolder) -> str:
    """Each confirmed candidate over its seeds, mean ± std of the validation accuracy per norm, beside the runs of
    the search's starting recipe (its trial 0: the recipe shipped when the search began) on the same split; then
    each candidate's difference from that recipe with its 95% interval."""
    trials = [trial for trial in _search_trials(folder, "confirm") if trial["state"] == "COMPLETE"]
    if not trials:
        return "*Nothing confirmed yet: run `python -m training.search --confirm 2`.*\n"
    start = next((trial["params"] for trial in _search_trials(folder, "screen") if trial["trial"] == 0), {})
    by_candidate: dict[int, list[dict[str, Any]]] = {}
    for trial in trials:
        by_candidate.setdefault(trial["screen_trial"], []).append(trial)
    models = [model for trial in trials for model in trial["models"].values()]
    lengths = {(model["epochs"], model.get("train_images")) for model in models}
    # The starting recipe's runs are comparable when every candidate ran one length on one training set.
    start_runs = starting_recipe_validation(folder, start, *next(iter(lengths))) if len(lengths) == 1 else {}
    rows, differences = [], []
    for screened, runs in by_candidate.items():
        runs = sorted(runs, key=lambda run: run["params"]["seed"])
        values = {norm: [run["models"][norm]["validation_accuracy"] for run in runs if norm in run["models"]]
                  for norm in NORMS}
        epochs = "/".join(map(str, sorted({model["epochs"] for run in runs for model in run["models"].values()})))
        seeds = ", ".join(f"{run['params']['seed']} ({run['trial']})" for run in runs)
        rows.append([str(screened), changes_from_shipped(runs[0]["params"], list(NORMS)), epochs, seeds,
                     *(_mean_std(values[norm]) for norm in NORMS)])
        if start_runs:
            cells = [difference_text(pairwise_differences({"a": values[norm], "b": list(start_runs[norm].values())})
                                     .get("a-b"), bold_when_detected=True) for norm in NORMS]
            differences.append([f"trial {screened} − trial 0's recipe", *cells])
    if any(start_runs.values()):
        seeds = "; ".join(f"{NORMS[norm].short} {', '.join(map(str, sorted(per_seed)))}"
                          for norm, per_seed in start_runs.items() if per_seed)
        rows.append(["–", f"{changes_from_shipped(start, list(NORMS))} (trial 0's recipe, shipped when the "
                     "search began; runs recorded by hand)", str(next(iter(lengths))[0]), seeds,
                     *(_mean_std(list(start_runs[norm].values())) for norm in NORMS)])
    table = markdown_table(["screened as trial", "changes from the shipped recipe", "epochs", "seeds (trial)",
                            *(NORMS[n].short for n in NORMS)], rows, right=2)
    if not any(start_runs.values()):
        return table
    return (table.rstrip("\n") + "\n\nDifferences in points of validation accuracy, with their 95% intervals "
            "(Welch's, over the seeds above; in bold when the interval excludes zero; a difference without an "
            "interval has one seed on a side):\n\n"
            + markdown_table(["candidate", *(NORMS[n].short for n in NORMS)], differences))


def lab_table(name: str) -> Callable[[CheckpointFolder], str]:
    def render(folder: CheckpointFolder) -> str:
        results = read_lab_results(folder.lab, name)
        if results is None:
            return f"*Not measured: run `python -m training.lab {name}`.*\n"
        setup, headers, rows = EXPERIMENTS[name].table(results)
        return setup + "\n\n" + markdown_table(headers, rows)
    return render


PAIRS = [f"{a}-{b}" for i, a in enumerate(NORMS) for b in list(NORMS)[i + 1:]]
PAIR_HEADERS = [f"{NORMS[p.split('-')[0]].short} − {NORMS[p.split('-')[1]].short}" for p in PAIRS]


def robustness_differences(folder: CheckpointFolder) -> str:
    results = read_lab_results(folder.lab, "robustness")
    if results is None or "differences" not in results:
        return "*Not measured over seeds: run `python -m training.lab robustness`.*\n"
    from probes.corruptions import CORRUPTION_TITLES

    titles = {"clean": "Clean", "average": "Average of the corruptions", **CORRUPTION_TITLES}
    rows = [[titles.get(name, name), *(difference_text(per_pair.get(pair), bold_when_detected=True) for pair in PAIRS)]
            for name, per_pair in results["differences"].items()]
    return markdown_table(["Corruption (points)", *PAIR_HEADERS], rows)


def calibration_differences(folder: CheckpointFolder) -> str:
    results = read_lab_results(folder.lab, "calibration")
    per_seed = (results or {}).get("per_seed", {})
    if len(per_seed) < 2:
        return "*Not measured over seeds: run `python -m training.lab calibration`.*\n"
    from training.statistics import pairwise_differences

    values = {norm: [seed["results"][norm]["ece"] for seed in per_seed.values()] for norm in NORMS}
    differences = pairwise_differences(values)
    row = [f"over seeds {', '.join(per_seed)}",
           *(difference_text(differences.get(pair), bold_when_detected=True) for pair in PAIRS)]
    return markdown_table(["Expected calibration error (points)", *PAIR_HEADERS], [row])


def architectures_table(_: CheckpointFolder) -> str:
    """Every network ``--arch`` can build, from its record, with the parameters it has (the same for each norm)."""
    rows = []
    for name, record in ARCHITECTURES.items():
        with torch.device("meta"):
            parameters = {count_parameters(build_model(name, norm)) for norm in NORMS}
        shown = " to ".join(f"{count:,}" for count in sorted(parameters))
        rows.append([f"`{name}`" + (" (default)" if name == DEFAULT_ARCH else ""), record.description, shown])
    return markdown_table(["`--arch`", "what it is", "parameters"], rows, right=2)


SECTIONS: dict[str, Callable[[CheckpointFolder], str]] = {
    "results": results_table,
    "architectures": architectures_table,
    "differences": differences_list,
    "grid": grid_table,
    "reproduction": reproduction_table,
    "validation_trials": lambda folder: trials_table(folder, "validation_accuracy"),
    "test_trials": lambda folder: trials_table(folder, "test_accuracy"),
    "search_screening": screening_table,
    "search_confirmation": confirmation_table,
    **{f"lab_{name}": lab_table(name) for name in EXPERIMENTS},
    "lab_robustness_differences": robustness_differences,
    "lab_calibration_differences": calibration_differences,
}


def render(text: str, folder: CheckpointFolder) -> str:
    """``text`` with every generated section rebuilt from ``folder``; unknown section names raise ValueError."""
    def rebuild(match: re.Match) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise ValueError(f"README section {name!r} is not one of {', '.join(SECTIONS)}")
        return match.group(1) + SECTIONS[name](folder) + match.group(4)

    return MARKER.sub(rebuild, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.readme", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    updated = render(text, CheckpointFolder(args.checkpoint_dir))
    before, after = ({m["name"]: m["body"] for m in MARKER.finditer(t)} for t in (text, updated))
    stale = [name for name in before if before[name] != after[name]]
    if args.check:
        if stale:
            print(f"{args.readme} disagrees with the files in {args.checkpoint_dir} in: {', '.join(stale)}; "
                  "run `python -m training.readme` to rebuild it", file=sys.stderr)
            return 1
        return 0
    if stale:
        from artifacts.atomic import write_bytes

        write_bytes(args.readme, updated.encode())
    print(f"{args.readme}: {len(stale)} of {len(MARKER.findall(text))} generated sections rebuilt"
          + (f" ({', '.join(stale)})" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
