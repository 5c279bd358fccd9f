"""Training the three norms side by side on a CPU, one worker process each.

A small network does not keep several threads fully busy, so on 2 cores three
single-threaded runs at once get through about 1.2x the images per second of three
2-thread runs one after another (benchmarks/side_by_side.py).
On a GPU the runs go one after another, as they would anyway.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.config import TrainConfig
from training.data import Split, hold_out_validation, load_split
from training.loop import keep_freed_memory, train


class WorkerDied(RuntimeError):
    """A worker process ended without reporting (killed, or out of memory)."""


@dataclass(frozen=True)
class Task:
    """What every run of one ``python -m training`` command shares."""

    data_dir: Path
    device: torch.device
    output_dir: Path
    state_dir: Path
    restart: bool = False
    progress: bool = True


def plan_jobs(runs: int, device: torch.device, jobs: int | None = None,
              threads: int | None = None) -> tuple[int, int]:
    """How many runs to train at once, and with how many threads each.

    ``jobs=None`` picks: all runs at once on a CPU, one at a time on a GPU. The
    ``threads`` PyTorch would use (default: its own count, one per core) are shared out
    evenly, at least one each: three runs on two cores share them, which still beats
    one run after another.
    """
    threads = threads or torch.get_num_threads()
    if jobs is None:
        jobs = runs if device.type == "cpu" else 1
    jobs = max(1, min(jobs, runs))
    if jobs == 1:
        return 1, threads
    return jobs, max(1, threads // jobs)


def train_and_export(config: TrainConfig, task: Task, train_split: Split, test_split: Split,
                     position: int = 0) -> None:
    """Train one norm (resuming if its state is saved) and write its checkpoint and plots."""
    from training.export import export_norm

    validation = None
    if config.validation:
        train_split, held_out, held_out_id = hold_out_validation(train_split)
        validation = (held_out, held_out_id)
    result = train(config, train_split, validation[0] if validation else test_split, task.device, task.state_dir,
                   restart=task.restart, progress=task.progress, position=position)
    export_norm(result, test_split, task.output_dir, len(train_split), validation)


def _worker_start(threads: int, lock: Any) -> None:
    torch.set_num_threads(threads)
    keep_freed_memory()
    tqdm.set_lock(lock)  # one lock for every process's progress bar


def _train_in_worker(config: TrainConfig, task: Task, position: int) -> None:
    train_split = load_split(task.data_dir, train=True)
    test_split = load_split(task.data_dir, train=False)
    train_and_export(config, task, train_split, test_split, position)


def train_in_parallel(configs: list[TrainConfig], task: Task, jobs: int, threads: int) -> None:
    """Train and export every config, ``jobs`` at a time, in fresh worker processes.

    If one run raises (say its loss diverges) the others still finish and are exported,
    and the first error is raised afterwards. If a worker process dies instead (killed,
    out of memory) the pool stops them all. Finished epochs are saved either way.
    """
    # "spawn": a forked copy of a process that already ran OpenMP code can hang.
    context = multiprocessing.get_context("spawn")
    lock = context.RLock()
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_start,
                             initargs=(threads, lock)) as pool:
        futures = [pool.submit(_train_in_worker, config, task, position)
                   for position, config in enumerate(configs)]
        try:
            wait(futures)
        except KeyboardInterrupt:
            # A worker that did not get the interrupt itself (say only this process was
            # signalled) would keep the command alive until its run ends. Every finished
            # epoch is saved atomically, so stopping the workers loses nothing.
            for process in getattr(pool, "_processes", {}).values():  # no public way before Python 3.14
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    for future in futures:
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            raise WorkerDied(
                "a training process stopped without a word (killed, or out of memory?). Finished "
                f"epochs are kept in {task.state_dir}/: run the same command again to continue, "
                "or add --jobs 1 to train one norm at a time."
            ) from error
        if error is not None:
            raise error
