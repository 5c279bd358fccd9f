"""Training the three norms side by side (one process each) against one after another.

What `python -m training --norm all` does on a CPU (see training/parallel.py), measured
against training the three in turn with all threads, in one run: the training loop
itself (`training.loop.train_epoch`), the same number of steps per norm. The batches come
from random uint8 images, so no dataset is needed (cropping and flipping cost the same).

    python benchmarks/side_by_side.py --steps 30 --rounds 3
"""

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import NORMS  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import reflect_pad  # noqa: E402
from training.loop import keep_freed_memory, move_to, start_run, train_epoch  # noqa: E402
from training.parallel import plan_jobs  # noqa: E402

_barrier: Any = None  # set in each worker process by _worker_start
STATE_UNUSED = Path("unused")  # train_epoch names the state file only in its divergence message


def timed_steps(norm: str, steps: int, batch_size: int, barrier: Any = None) -> tuple[float, float]:
    """Wall-clock start and end of ``steps`` steps of the training loop (after two warm-up steps)."""
    config = TrainConfig(norm=norm, batch_size=batch_size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size * steps, 3, 32, 32), dtype=torch.uint8, generator=generator)
    run = start_run(config, steps + 2, images)
    move_to(run, torch.device("cpu"))
    padded, labels = reflect_pad(images, config.crop_padding), torch.randint(0, 10, (len(images),), generator=generator)
    train_epoch(run, config, padded[: 2 * batch_size], labels[: 2 * batch_size], STATE_UNUSED, progress=False)
    if barrier is not None:
        barrier.wait()  # the side-by-side runs start their clocks together
    started = time.time()
    train_epoch(run, config, padded, labels, STATE_UNUSED, progress=False)
    return started, time.time()


def _worker_start(threads: int, barrier: Any) -> None:
    global _barrier
    torch.set_num_threads(threads)
    keep_freed_memory()
    _barrier = barrier


def _timed_in_worker(norm: str, steps: int, batch_size: int) -> tuple[float, float]:
    return timed_steps(norm, steps, batch_size, _barrier)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per norm")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each; the best counts")
    args = parser.parse_args()
    keep_freed_memory()
    jobs, threads = plan_jobs(len(NORMS), torch.device("cpu"))
    images = len(NORMS) * args.steps * args.batch_size

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(NORMS))
    in_turn, side_by_side = [], []
    with ProcessPoolExecutor(len(NORMS), mp_context=context, initializer=_worker_start,
                             initargs=(threads, barrier)) as pool:
        for _ in range(args.rounds):  # alternated, so a busy moment slows both alike
            in_turn.append(sum(end - start for start, end in (timed_steps(n, args.steps, args.batch_size)
                                                              for n in NORMS)))
            spans = list(pool.map(_timed_in_worker, NORMS, [args.steps] * len(NORMS),
                                  [args.batch_size] * len(NORMS)))
            side_by_side.append(max(end for _, end in spans) - min(start for start, _ in spans))
    best_in_turn, best_side_by_side = min(in_turn), min(side_by_side)

    print(f"BN, GN and LN, {args.steps} steps of batch {args.batch_size} each, CPU with "
          f"{torch.get_num_threads()} threads")
    print(f"  one after another, {torch.get_num_threads()} threads: {images / best_in_turn:8,.0f} img/s "
          f"(rounds: {', '.join(f'{t:.1f}' for t in in_turn)} s)")
    print(f"  side by side, {jobs} processes x {threads} thread(s): {images / best_side_by_side:8,.0f} img/s "
          f"(rounds: {', '.join(f'{t:.1f}' for t in side_by_side)} s)")
    print(f"  ratio (best round of each): {best_in_turn / best_side_by_side:.2f}x")


if __name__ == "__main__":
    main()
