"""python -m training.search: screen training recipes with Optuna, confirm the best, print the record.

    python -m training.search --hours 10          # a worker: screen candidates for 10 hours (Ctrl-C stops it)
    python -m training.search --confirm 3         # the 3 best screened candidates at 20 epochs, 2 seeds each
    python -m training.search --confirm-trial 7   # screened trial 7 at 20 epochs, 2 seeds (--seeds)
    python -m training.search --record           # what has been screened, pruned and confirmed; the best
    python -m training.search --enqueue '{"attention": true}'   # screen this idea next (the rest as shipped)
    python -m training.search --import-trials checkpoints/trials.json   # fold the runs made by hand into it

The studies live in one Optuna journal, ``checkpoints/search/journal.log`` (``--checkpoint-dir``):
commit it, and a later session continues the same studies. Any number of workers can run at once,
in other terminals or on other machines that mount the same folder; each takes the next trial.
``kill PID`` stops a worker as Ctrl-C does: its trial is queued again at once. A worker killed
otherwise (SIGKILL, a crash, a lost machine) leaves its trial RUNNING until another worker sees
it is gone and queues it again (``training.search.storage``). Either way the trial continues
from its last finished epoch.
See ``training.search.record`` for the studies, and README.md, "The search".
"""

import argparse
import contextlib
import hashlib
import json
import shutil
import signal
import statistics
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from artifacts.folder import CheckpointFolder, default_checkpoint_dir
from artifacts.trials import TrialsError
from model import NORMS
from training.data import DataError, add_data_arguments, dataset_problems, default_data_dir, load_split
from training.loop import describe_device, keep_freed_memory, pick_device
from training.parallel import WorkerDied, plan_jobs
from training.search.record import (
    CONFIRM,
    SCREEN,
    describe,
    import_trials,
    models_attr,
    write_trials_file,
)
from training.search.runner import TrainingFailed, train_side_by_side
from training.search.space import baseline, idea_choices, same_choices, suggest, trial_configs
from training.search.storage import HeartbeatJournalStorage, SearchError, open_study, retry_interrupted


class NothingToConfirm(RuntimeError):
    """Another worker took the last confirmation run first."""


def trial_key(stage: str, params: dict[str, Any], settings: dict[str, Any]) -> str:
    """Names a trial's training states: the same choices and settings, the same key (a retried trial resumes)."""
    text = json.dumps({"stage": stage, "params": params, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Objective:
    """One trial: suggest the choices, train the norms side by side, report the mean validation accuracy per epoch."""

    def __init__(self, stage: str, settings: dict[str, Any], args: argparse.Namespace, device: torch.device,
                 threads: int) -> None:
        self.stage, self.settings, self.args, self.device, self.threads = stage, settings, args, device, threads
        self.norms: list[str] = settings["norms"]
        self.current: int | None = None  # the trial being trained, so an interruption can queue it again

    def __call__(self, trial: optuna.Trial) -> float:
        if self.stage == CONFIRM and "screen_trial" not in trial.user_attrs:  # set on the runs queued to confirm
            raise NothingToConfirm("no confirmation run was waiting (another worker took the last one)")
        self.current = trial.number
        params = suggest(trial, self.norms)
        if self.stage == CONFIRM:
            params["seed"] = trial.suggest_int("seed", 0, 1000)
        configs = trial_configs(params, self.norms, self.settings["epochs"],
                                train_subset=self.settings.get("train_subset"))
        state_dir = Path(self.args.state_dir) / self.stage / trial_key(self.stage, params, self.settings)
        trial.set_user_attr("device", describe_device(self.device, self.threads)
                            + (f", {len(configs)} runs at once" if len(configs) > 1 else ""))
        seen: dict[str, list[dict[str, float]]] = {norm: [] for norm in self.norms}

        def on_epoch(epoch: int, records: dict[str, dict[str, float]]) -> None:
            for norm, record in records.items():
                seen[norm].append(record)
            value = statistics.fmean(record["val_accuracy"] for record in records.values())
            trial.report(value, epoch)
            each = ", ".join(f"{norm} {record['val_accuracy']:.2%}" for norm, record in records.items())
            print(f"{self.stage} trial {trial.number} epoch {epoch}/{self.settings['epochs']}: mean validation "
                  f"accuracy {value:.2%} ({each})", flush=True)
            if self.stage == SCREEN and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at {value:.2%}")

        finished = False
        try:
            train_side_by_side(configs, self.data_dir, self.device, state_dir, self.threads, on_epoch,
                               models_dir=self.models_dir(trial.number))
            finished = True
        except (optuna.TrialPruned, TrainingFailed) as error:
            finished = True  # nothing to continue: its states can go
            if isinstance(error, TrainingFailed):
                trial.set_user_attr("error", str(error))
            raise
        finally:
            trial.set_user_attr("models", models_attr(configs, seen))
            if finished:
                shutil.rmtree(state_dir, ignore_errors=True)
                self.current = None
        return statistics.fmean(history[-1]["val_accuracy"] for history in seen.values())

    def models_dir(self, number: int) -> Path | None:
        """Where a confirmation run keeps its models, to be measured on photos (screening runs keep none)."""
        if self.stage != CONFIRM:
            return None
        return Path(self.args.state_dir) / "models" / f"{self.stage}-{number}"

    @property
    def data_dir(self) -> Path:
        return self.args.data_dir or default_data_dir()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to do (default: screen candidates)").add_mutually_exclusive_group()
    what.add_argument("--confirm", type=int, metavar="K",
                      help="train the K best screened candidates again at --confirm-epochs over --seeds seeds")
    what.add_argument("--confirm-trial", type=int, metavar="N", action="append",
                      help="train screened trial N again, as --confirm does the best; repeat for several")
    what.add_argument("--record", action="store_true", help="print the search's record and exit")
    what.add_argument("--import-trials", type=Path, metavar="FILE",
                      help="fold a trials.json (the runs made by hand) into the journal's 'recorded' study and exit")
    what.add_argument("--enqueue", type=str, metavar="JSON", action="append",
                      help="queue a set of choices (a JSON object of the space's names; the rest as shipped) for "
                      "the screening workers to take next, and exit; repeat for several")
    screen = parser.add_argument_group("screening")
    screen.add_argument("--trials", type=int, default=None, help="stop this worker after N trials (default: no limit)")
    screen.add_argument("--hours", type=float, default=None,
                        help="start no new trial after this many hours (default: no limit; Ctrl-C stops it any time)")
    screen.add_argument("--epochs", type=int, default=8,
                        help="each screening run's length, a whole schedule of its own (default 8; fixed per study)")
    screen.add_argument("--norms", nargs="+", choices=list(NORMS), default=list(NORMS),
                        help="the norms each trial trains, side by side; the objective is their mean validation "
                        "accuracy (default all three; fixed per study)")
    screen.add_argument("--train-subset", type=int, default=None,
                        help="train on the first N of the 45,000 training images only (smoke tests; fixed per study)")
    screen.add_argument("--prune-startup", type=int, default=8,
                        help="MedianPruner: prune nothing until this many trials have finished (default 8)")
    screen.add_argument("--prune-warmup", type=int, default=3,
                        help="MedianPruner: prune no trial before this many epochs (default 3)")
    confirm = parser.add_argument_group("confirmation")
    confirm.add_argument("--seeds", type=int, default=2, help="seeds per confirmed candidate (default 2)")
    confirm.add_argument("--confirm-epochs", type=int, default=20, help="the full schedule's length (default 20)")
    where = parser.add_argument_group("where")
    where.add_argument("--checkpoint-dir", type=Path, default=None,
                       help="the journal is CHECKPOINT_DIR/search/journal.log and trials.json is rewritten in "
                       "CHECKPOINT_DIR (default: $CHECKPOINT_DIR, else checkpoints)")
    add_data_arguments(where)
    where.add_argument("--state-dir", type=Path, default=Path("runs/search"),
                       help="the trials' per-epoch training states, so a stopped trial continues (default runs/search)")
    where.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    workers = parser.add_argument_group("workers")
    workers.add_argument("--heartbeat", type=int, default=60,
                         help="seconds between a running trial's signs of life in the journal (default 60)")
    workers.add_argument("--stale-after", type=int, default=600,
                         help="a trial not heard from for this long is failed and queued again (default 600; a "
                         "trial of a process that is gone on this machine at once)")
    args = parser.parse_args(argv)
    for name in ("trials", "confirm", "seeds", "train_subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 1 <= args.epochs <= 20 or not 1 <= args.confirm_epochs <= 20:
        parser.error("--epochs and --confirm-epochs must be between 1 and 20")
    args.norms = list(dict.fromkeys(args.norms))
    return args


def quietly(make: Any) -> Any:
    """Optuna marks several of its options experimental; their warnings would repeat in every log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return make()


def screening_study(args: argparse.Namespace, storage: HeartbeatJournalStorage) -> tuple[optuna.Study, dict[str, Any]]:
    settings = {"epochs": args.epochs, "norms": args.norms, "train_images": args.train_subset or 45_000,
                "train_subset": args.train_subset}
    # group=True: the trials from before the batch size joined the space name none, and plain multivariate TPE
    # models jointly only what every trial names; grouped, it models the batch size with the rest where named.
    sampler = quietly(lambda: optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True,
                                                         n_startup_trials=10))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=args.prune_startup, n_warmup_steps=args.prune_warmup)
    study = open_study(storage, SCREEN, settings, sampler, pruner)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(baseline(args.norms), skip_if_exists=True)  # the shipped recipe comes first
    return study, settings


def choices_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's choices: a queued trial not yet run holds them as its fixed params."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def enqueue(args: argparse.Namespace, storage: HeartbeatJournalStorage) -> None:
    """Queue ideas for the screening workers; each is checked against the space before it reaches the journal."""
    choices = [idea_choices(text, args.norms) for text in args.enqueue]
    study, _ = screening_study(args, storage)
    for params in choices:
        queued = not any(same_choices(params, choices_of(trial)) for trial in study.get_trials(deepcopy=False))
        if queued:
            study.enqueue_trial(params)
        print(f"{'queued' if queued else 'already in the study, not queued again'}: "
              f"{json.dumps(params, sort_keys=True)}")


def screen(args: argparse.Namespace, storage: HeartbeatJournalStorage, objective_for: Any, after_trial: Any) -> None:
    study, settings = screening_study(args, storage)
    objective = objective_for(SCREEN, settings)
    run(study, objective, after_trial, n_trials=args.trials,
        timeout=args.hours * 3600 if args.hours is not None else None)


def confirm(args: argparse.Namespace, storage: HeartbeatJournalStorage, objective_for: Any, after_trial: Any) -> None:
    try:
        screened = optuna.load_study(study_name=SCREEN, storage=storage)
    except KeyError:
        raise SearchError("there is no screening study to confirm: run `python -m training.search` first") from None
    norms = screened.user_attrs["norms"]
    completed = sorted(screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
    candidates: list[optuna.trial.FrozenTrial] = []
    if args.confirm_trial:
        by_number = {trial.number: trial for trial in completed}
        unfinished = [str(number) for number in args.confirm_trial if number not in by_number]
        if unfinished:
            raise SearchError(f"screening trial {', '.join(unfinished)} has not completed: only a completed trial "
                              "is confirmed (`python -m training.search --record` lists them)")
        candidates = [by_number[number] for number in dict.fromkeys(args.confirm_trial)]
    else:
        for trial in completed:
            if not any(same_choices(trial.params, chosen.params) for chosen in candidates):
                candidates.append(trial)
        candidates = candidates[: args.confirm]
    if not candidates:
        raise SearchError("no screening trial has completed yet: nothing to confirm")
    settings = {"epochs": args.confirm_epochs, "norms": norms, "train_images": screened.user_attrs["train_images"],
                "train_subset": screened.user_attrs.get("train_subset")}
    study = open_study(storage, CONFIRM, settings, optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
    existing = study.get_trials(deepcopy=False)
    for candidate in candidates:
        for seed in range(args.seeds):
            params = {**candidate.params, "seed": seed}
            if any(same_choices(choices_of(trial), params) and trial.state != TrialState.FAIL for trial in existing):
                continue
            study.enqueue_trial(params, user_attrs={"screen_trial": candidate.number, "screen_value": candidate.value})
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        print(f"nothing left to confirm for the {len(candidates)} candidates over {args.seeds} seeds")
        return

    def stop_when_done(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    run(study, objective_for(CONFIRM, settings), [after_trial[0], stop_when_done], n_trials=None, timeout=None)


def run(study: optuna.Study, objective: Objective, callbacks: list[Any], n_trials: int | None,
        timeout: float | None) -> None:
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                       catch=(TrainingFailed, WorkerDied, NothingToConfirm))
    except KeyboardInterrupt:
        if objective.current is not None:
            retry_interrupted(study, objective.current)
            print(f"\ninterrupted: trial {objective.current} is queued again and will continue from its last "
                  "finished epoch when a worker runs", file=sys.stderr)
        raise


@contextlib.contextmanager
def stop_on_terminate() -> Iterator[None]:
    """Within it, ``kill`` (SIGTERM) stops a worker as Ctrl-C does: its trial is queued again at once. A worker
    started in the background with ``nohup ... &`` ignores Ctrl-C's SIGINT, so SIGTERM is how it is stopped."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = CheckpointFolder(args.checkpoint_dir if args.checkpoint_dir is not None else default_checkpoint_dir())
    storage = HeartbeatJournalStorage(folder.search_journal, heartbeat_interval=args.heartbeat,
                                      grace_period=args.stale_after)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def write_trials(*_: Any) -> None:
        write_trials_file(storage, folder.trials)

    try:
        if args.record:
            print(describe(storage, str(folder.search_journal)))
            return 0
        if args.import_trials is not None:
            added = import_trials(storage, args.import_trials)
            write_trials()
            print(f"{added} runs of {args.import_trials} added to {folder.search_journal} (study 'recorded'); "
                  f"{folder.trials} rewritten from it")
            return 0
        if args.enqueue:
            enqueue(args, storage)
            return 0
        if args.download:
            load_split(args.data_dir or default_data_dir(), train=True, download=True)
        problems = dataset_problems(args.data_dir or default_data_dir())
        if problems:
            raise DataError(f"CIFAR-10 not usable: {'; '.join(problems)}. Point --data-dir (or CIFAR10_DATA_DIR) at "
                            "the folder holding cifar-10-batches-py/, or run `python -m training --download`")
        device = pick_device(args.device)
        keep_freed_memory()
        _, threads = plan_jobs(len(args.norms), device, jobs=len(args.norms))

        def objective_for(stage: str, settings: dict[str, Any]) -> Objective:
            return Objective(stage, settings, args, device, threads)

        with stop_on_terminate():
            if args.confirm is not None or args.confirm_trial:
                confirm(args, storage, objective_for, [write_trials])
            else:
                screen(args, storage, objective_for, [write_trials])
        write_trials()
        print(describe(storage, str(folder.search_journal)))
    except (SearchError, DataError, TrialsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        write_trials()
        print("stopped: run the same command to continue the study", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
