"""The search's studies, in one Optuna journal file that workers share and the repository keeps.

``JournalStorage`` appends every operation to a file (``JournalFileBackend``) under a lock, so
any number of worker processes, on this machine or on others that mount the same folder
(NFS and the like: the lock is a symbolic link), can work on the same studies, and a later
session continues them by opening the same file.

Optuna's journal keeps no heartbeats, so a worker that was killed would leave its trial
RUNNING for ever. ``HeartbeatJournalStorage`` adds them: each running trial records, every
``heartbeat_interval`` seconds, when and by which worker (a digest of the host name, and the
process id) it was last seen alive. Before each new trial a worker fails the trials that are
stale, those not seen for ``grace_period`` seconds and those of a worker on this host whose
process is gone, and Optuna's ``RetryHeartbeatStaleTrialCallback`` puts each back in the
queue with the same choices (up to ``max_retry`` times), where the next free worker takes it
and continues its training from the last epoch saved.
"""

import hashlib
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # which machine, without naming it
HEARTBEAT_KEY = "heartbeat"


class SearchError(RuntimeError):
    """A study cannot be used as asked; the message says why and what to do."""


def worker_id() -> str:
    return f"{HOST}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that number
        return True
    return True


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal file with heartbeats, so killed workers' trials are found, failed and retried (see the module)."""

    def __init__(self, path: Path, heartbeat_interval: int = 60, grace_period: int = 600, max_retry: int = 2) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(JournalFileBackend(str(path)))
        self.path = Path(path)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, {"at": time.time(), "worker": worker_id()})

    def is_stale(self, trial: FrozenTrial, now: float | None = None) -> bool:
        """Whether a RUNNING trial's worker is gone: not heard from within the grace period, or a dead local process."""
        now = time.time() if now is None else now
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        beat = trial.system_attrs.get(HEARTBEAT_KEY)
        if not isinstance(beat, dict) or beat.get("at", 0) < started:
            # No heartbeat of this run yet (a retried trial carries its predecessor's): judge by the start.
            return now - started > self.grace_period
        if now - beat["at"] > self.grace_period:
            return True
        host, _, pid = str(beat.get("worker", "")).partition(":")
        return host == HOST and pid.isdigit() and not process_alive(int(pid))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [trial._trial_id for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if self.is_stale(trial, now)]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)


def load_or_create(storage: BaseStorage, name: str, sampler: optuna.samplers.BaseSampler | None = None,
                   pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study ``name`` (maximizing), created if the journal has none (loading first: each attempt to create
    one is a line in the journal)."""
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        return optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                   pruner=pruner, load_if_exists=True)


def open_study(storage: BaseStorage, name: str, settings: dict[str, Any],
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study ``name``, created with ``settings`` as its user attributes if new; refused if it has others.

    The settings are what makes its trials comparable (epochs, norms, images): a worker started with
    different ones would mix incomparable numbers into one study.
    """
    study = load_or_create(storage, name, sampler, pruner)
    saved = study.user_attrs
    if not saved:
        for key, value in settings.items():
            study.set_user_attr(key, value)
        return study
    differing = {key: (saved.get(key), value) for key, value in settings.items() if saved.get(key) != value}
    if differing:
        described = "; ".join(f"{key}: the study has {old!r}, this command {new!r}" for key, (old, new) in
                              differing.items())
        raise SearchError(f"the study {name!r} was started with other settings ({described}). Continue it with its "
                          "own settings, or start a separate search in another folder (--checkpoint-dir)")
    return study


def retry_interrupted(study: optuna.Study, trial_number: int) -> None:
    """Queue a trial that this worker stopped (Ctrl-C) again, as a killed worker's trial is queued."""
    trial = study.get_trials(deepcopy=False)[trial_number]
    if trial.state == TrialState.FAIL:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=None)(study, trial)
