"""The search's record: the journal's studies are the one record of trials; trials.json is generated from them.

Three studies share the journal:

* ``screen``: the Optuna search, short runs on the validation split, pruned epoch by epoch;
* ``confirm``: the best screened candidates again at full length over several seeds;
* ``recorded``: the runs made by hand (``python -m training --record-trial``), including those
  that were in ``checkpoints/trials.json`` before the search (``--import-trials``). Their value
  is the mean validation accuracy of their models; runs from before the validation split existed
  were compared on test accuracy and have no validation value, so they are kept as FAIL trials
  (Optuna's state for a trial without a value) with ``no_validation`` saying so.

``checkpoints/trials.json`` is rewritten from the journal whenever a trial is added or ends, in
the format ``artifacts.trials`` reads: the recorded runs exactly as they were recorded, then
every trial of the search with its state, value, commands and per-norm numbers.
"""

import json
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from artifacts.trials import model_record, read_trials, write_trials
from training.config import command_for
from training.search.space import changes_from_shipped, trial_configs
from training.search.storage import load_or_create

SCREEN, CONFIRM, RECORDED = "screen", "confirm", "recorded"
NO_VALIDATION = ("recorded before the validation split existed: compared on test accuracy, so it has no "
                 "validation value")


def _study(storage: BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def recorded_study(storage: BaseStorage) -> optuna.Study:
    return load_or_create(storage, RECORDED)


def validation_value(record: dict[str, Any]) -> float | None:
    """The mean validation accuracy of a record's models; None unless every model has one."""
    accuracies = [model.get("validation_accuracy") for model in record.get("models", {}).values()]
    if not accuracies or any(accuracy is None for accuracy in accuracies):
        return None
    return statistics.fmean(accuracies)


def record_run(study: optuna.Study, record: dict[str, Any]) -> FrozenTrial:
    """Add one recorded run (``{"command", "device", "note"?, "models"}``) to the ``recorded`` study."""
    value = validation_value(record)
    trial = optuna.create_trial(
        state=TrialState.COMPLETE if value is not None else TrialState.FAIL, value=value,
        user_attrs={"record": record, **({"no_validation": NO_VALIDATION} if value is None else {})})
    study.add_trial(trial)
    return trial


def import_trials(storage: BaseStorage, path: Path) -> int:
    """Fold a trials.json into the ``recorded`` study, skipping records already there; how many were added."""
    study = recorded_study(storage)
    present = [trial.user_attrs.get("record") for trial in study.get_trials(deepcopy=False)]
    added = 0
    for record in read_trials(path):
        if record.get("study") in (SCREEN, CONFIRM) or record in present:  # generated from the search itself
            continue
        record_run(study, record)
        present.append(record)
        added += 1
    return added


def repeat_commands(settings: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    """Per norm, the ``python -m training`` command that repeats a trial of a study with these settings as the
    command line reads today (a name that joined the space later at the value the trial ran with)."""
    if not params:  # failed before its choices were drawn
        return {}
    configs = trial_configs(params, settings["norms"], settings["epochs"],
                            train_subset=settings.get("train_subset"))
    return {config.norm: command_for(config) for config in configs}


def search_record(study_name: str, trial: FrozenTrial, settings: dict[str, Any]) -> dict[str, Any]:
    """A search trial of a study with these settings (its user attributes), as trials.json keeps it."""
    attrs = trial.user_attrs
    record: dict[str, Any] = {"study": study_name, "trial": trial.number, "state": trial.state.name,
                              "value": trial.value, "device": attrs.get("device"),
                              "commands": repeat_commands(settings, trial.params), "params": trial.params,
                              "models": attrs.get("models", {})}
    if "screen_trial" in attrs:
        record["screen_trial"] = attrs["screen_trial"]
    if trial.system_attrs.get("failed_trial") is not None:
        record["retry_of"] = trial.system_attrs["failed_trial"]
    return record


def trial_records(storage: BaseStorage) -> list[dict[str, Any]]:
    """Every trial of the journal as trials.json holds them: recorded runs first, then the search's."""
    records = []
    recorded = _study(storage, RECORDED)
    if recorded is not None:
        records += [trial.user_attrs["record"] for trial in recorded.get_trials(deepcopy=False)
                    if "record" in trial.user_attrs]
    for name in (SCREEN, CONFIRM):
        study = _study(storage, name)
        if study is not None:
            # A queued idea is not a trial yet; a stopped trial queued again is, waiting to continue.
            records += [search_record(name, trial, study.user_attrs) for trial in study.get_trials(deepcopy=False)
                        if trial.state != TrialState.WAITING or trial.system_attrs.get("failed_trial") is not None]
    return records


def write_trials_file(storage: BaseStorage, path: Path) -> None:
    write_trials(path, trial_records(storage))


def models_attr(configs: list[Any], histories: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per norm, what a search trial keeps: its settings (as a checkpoint would record them) and its last epoch."""
    models = {}
    for config in configs:
        history = histories.get(config.norm, [])
        last = history[-1] if history else {}
        settings = {"arch": config.arch, "norm": config.norm, "recipe": config.recipe, "seed": config.seed,
                    "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                    "crop_padding": config.crop_padding, "weight_decay": config.weight_decay,
                    "label_smoothing": config.label_smoothing, **config.levers(),
                    **({"gn_groups": config.gn_groups} if config.norm == "gn" else {}),
                    "train_images": config.train_subset or 45_000}
        if "val_accuracy" in last:
            settings["validation_accuracy"] = last["val_accuracy"]
        if "train_accuracy" in last:
            settings["train_accuracy"] = last["train_accuracy"]
        models[config.norm] = {**model_record(settings), "epochs_trained": len(history),
                               "train_seconds": round(sum(epoch.get("seconds", 0.0) for epoch in history), 1)}
    return models


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _per_norm(trial: FrozenTrial) -> str:
    models = trial.user_attrs.get("models", {})
    return " / ".join(f"{norm} {_percent(model.get('validation_accuracy'))}" for norm, model in models.items())


def describe(storage: BaseStorage, journal: str) -> str:
    """The search's record in words: how many trials were screened, pruned and confirmed, and the best."""
    lines = [f"The search's record, in {journal}"]
    screen = _study(storage, SCREEN)
    if screen is None:
        lines.append("\nNo screening study yet: start one with `python -m training.search`.")
    else:
        settings = screen.user_attrs
        norms = settings.get("norms", [])
        trials = screen.get_trials(deepcopy=False)
        counts = {state: sum(trial.state == state for trial in trials) for state in TrialState}
        lines.append(
            f"\nScreening (study {SCREEN!r}): {settings.get('epochs')} epochs on "
            f"{settings.get('train_images', 45_000):,} training images, mean validation accuracy of "
            f"{', '.join(norms)} on the fixed 5,000; {len(trials)} trials: {counts[TrialState.COMPLETE]} complete, "
            f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
            f"{counts[TrialState.RUNNING]} running, {counts[TrialState.WAITING]} waiting.")
        complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
        for rank, trial in enumerate(complete[:5], 1):
            lines.append(f"  {rank}. trial {trial.number}: {_percent(trial.value)} ({_per_norm(trial)}): "
                         f"{changes_from_shipped(trial.params, norms)}")
        if complete:
            best = complete[0]
            lines.append(f"  best: trial {best.number}, {json.dumps(best.params)}")
    confirm = _study(storage, CONFIRM)
    if confirm is not None:
        lines.append(_describe_confirm(confirm))
    recorded = _study(storage, RECORDED)
    if recorded is not None:
        runs = recorded.get_trials(deepcopy=False)
        with_value = sum(trial.state == TrialState.COMPLETE for trial in runs)
        lines.append(f"\nRecorded by hand (study {RECORDED!r}): {len(runs)} runs, {with_value} with a validation "
                     f"accuracy, {len(runs) - with_value} from before the validation split.")
    lines.append("\nContinue the screening: python -m training.search (any number of workers at once); confirm the "
                 "best K: python -m training.search --confirm K")
    return "\n".join(lines)


def _describe_confirm(confirm: optuna.Study) -> str:
    settings = confirm.user_attrs
    trials = confirm.get_trials(deepcopy=False)
    candidates: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        candidates.setdefault(trial.user_attrs.get("screen_trial", -1), []).append(trial)
    lines = [f"\nConfirmation (study {CONFIRM!r}): {settings.get('epochs')} epochs, {len(candidates)} candidates, "
             f"{len(trials)} runs ({sum(t.state == TrialState.COMPLETE for t in trials)} complete)."]
    ranked = []
    for screened, runs in candidates.items():
        done = [run for run in runs if run.state == TrialState.COMPLETE]
        values = [run.value for run in done]
        mean = statistics.fmean(values) if values else None
        spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
        per_norm = {}
        for run in done:
            for norm, model in run.user_attrs.get("models", {}).items():
                per_norm.setdefault(norm, []).append(model.get("validation_accuracy"))
        norms = " / ".join(f"{norm} {_percent(statistics.fmean(v))}" for norm, v in per_norm.items())
        seeds = sorted(run.params.get("seed") for run in done)
        ranked.append((mean if mean is not None else -1.0, screened,
                       f"  screen trial {screened}: {_percent(mean)}{spread} over seeds {seeds} ({norms})"))
    ranked.sort(key=lambda item: item[0], reverse=True)
    lines += [line for _, _, line in ranked]
    best = [run for run in candidates.get(ranked[0][1], []) if run.state == TrialState.COMPLETE] if ranked else []
    if best:
        params = {key: value for key, value in best[0].params.items() if key != "seed"}
        lines.append("  the best, trained as the shipped models are (all 50,000 images, seeds 0, 1 and 2):")
        lines += [f"    {command_for(config, seeds=3)}" for config in
                  trial_configs(params, settings["norms"], settings["epochs"], validation=False)]
    return "\n".join(lines)
