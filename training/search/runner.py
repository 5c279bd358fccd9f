"""One trial's training: a config per norm, side by side in worker processes, reported epoch by epoch.

Each norm trains in its own process (as ``python -m training`` does on a CPU, with an equal
share of the threads) on the 45,000 training images the fixed validation split leaves, and is
evaluated on the 5,000 validation images after every epoch: the test set is never loaded. As
soon as every norm has finished epoch k, ``on_epoch(k, records)`` is called with each norm's
record of that epoch; if it raises (the trial is pruned), the workers are stopped. Each epoch's
state is saved in ``state_dir``, so a trial started again continues where it stopped.
"""

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.config import TrainConfig
from training.data import hold_out_validation, load_split
from training.export import export_candidate
from training.loop import keep_freed_memory, train
from training.parallel import WorkerDied

POLL_SECONDS = 2.0


class TrainingFailed(RuntimeError):
    """A norm's training raised (its loss diverged, its data could not be read ...); the message says which."""


def die_with_parent(parent: int) -> None:
    """Have the kernel end this process when its parent ends (Linux), so a killed worker leaves no training behind."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:  # the parent was gone before the setting took effect
        os._exit(1)


def train_norm(config: TrainConfig, data_dir: Path, device: torch.device, state_dir: Path, threads: int,
               messages: Any, parent: int | None = None, models_dir: Path | None = None) -> None:
    """A worker: train one config on the training images the validation split leaves, reporting every epoch;
    with ``models_dir``, the trained model is kept there (``training.export.export_candidate``)."""
    if parent is not None:
        die_with_parent(parent)
    torch.set_num_threads(threads)
    keep_freed_memory()
    # This worker shows no progress bar, so a thread lock is all tqdm needs. Its default is a semaphore shared
    # between processes, which is left behind, and reported as leaked at exit, when a pruned or stopped trial's
    # worker is terminated.
    tqdm.set_lock(threading.RLock())
    try:
        rest, held_out, held_out_id = hold_out_validation(load_split(data_dir, train=True))
        result = train(config, rest, held_out, device, state_dir, progress=False,
                       report=lambda record: messages.put(("epoch", config.norm, record)))
        if models_dir is not None:
            export_candidate(result, models_dir, train_images=len(rest), validation_split=held_out_id)
        messages.put(("done", config.norm, None))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the trial with it
        messages.put(("error", config.norm, f"{type(error).__name__}: {error}"))


def train_side_by_side(configs: list[TrainConfig], data_dir: Path, device: torch.device, state_dir: Path,
                       threads: int, on_epoch: Callable[[int, dict[str, dict[str, float]]], None],
                       models_dir: Path | None = None) -> dict[str, list[dict[str, float]]]:
    """Train every config at once, one process each; every norm's per-epoch records, in epoch order.
    With ``models_dir``, each trained model is kept there, one checkpoint per norm."""
    context = multiprocessing.get_context("spawn")  # a forked copy of a process that ran OpenMP code can hang
    messages = context.Queue()
    workers = {config.norm: context.Process(target=train_norm, name=f"train-{config.norm}", daemon=True,
                                            args=(config, data_dir, device, state_dir, threads, messages, os.getpid(),
                                                  models_dir))
               for config in configs}
    histories: dict[str, list[dict[str, float]]] = {norm: [] for norm in workers}
    done: set[str] = set()
    reported = 0
    try:
        for worker in workers.values():
            worker.start()
        while len(done) < len(workers):
            try:
                kind, norm, payload = messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                gone = [norm for norm, worker in workers.items() if norm not in done and not worker.is_alive()]
                if gone:
                    raise WorkerDied(f"the training process of {', '.join(gone)} stopped without a word (killed, or "
                                     "out of memory?)") from None
                continue
            if kind == "error":
                raise TrainingFailed(f"{norm}: {payload}")
            if kind == "done":
                done.add(norm)
                continue
            histories[norm].append(payload)
            while reported < min(len(history) for history in histories.values()):
                reported += 1
                on_epoch(reported, {norm: history[reported - 1] for norm, history in histories.items()})
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.terminate()
        for worker in workers.values():
            worker.join()
    return histories
