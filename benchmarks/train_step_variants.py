"""One CPU training step of the network in the ways one might run it, in alternating rounds.

On a CPU the training loop runs the network in channels_last memory format with PyTorch's
default CPU backend (oneDNN), and the filters train with Muon where the recipe says so. This
compares that step with the plain NCHW layout, with ``torch.compile`` (which needs a C++
compiler on a CPU), with oneDNN turned off and with SGD for every weight (``--muon-lr 0``):
same network, batch and random input, each variant a fresh copy of the network.
Every variant is timed once per round, rounds alternate, and the median round of each is
compared with the training loop's: how many times its time each takes.

    python benchmarks/train_step_variants.py --rounds 3
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import ARCHITECTURES, DEFAULT_ARCH, build_model  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import keep_freed_memory, make_optimizer  # noqa: E402

VARIANTS = {  # name: (channels_last, compiled, oneDNN, the recipe's optimizer rather than SGD for all)
    "channels_last (the training loop)": (True, False, True, True),
    "NCHW": (False, False, True, True),
    "channels_last, torch.compile": (True, True, True, True),
    "channels_last, oneDNN off": (True, False, False, True),
    "channels_last, SGD for every weight": (True, False, True, False),
}


def make_step(arch: str, norm: str, inputs: torch.Tensor, labels: torch.Tensor, channels_last: bool,
              compiled: bool, recipe_optimizer: bool = True) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(arch, norm)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    config = TrainConfig(arch=arch, norm=norm, **({} if recipe_optimizer else {"muon_lr": 0.0}))
    optimizer, _ = make_optimizer(model, config, 1000)
    forward = torch.compile(model) if compiled else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def step() -> None:
        loss = loss_fn(forward(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def add_step_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The options both step benchmarks share: norm, batch size, steps per round, rounds."""
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help=f"timed steps per {what} and round")
    parser.add_argument("--rounds", type=int, default=3)


def random_batch(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random images and labels for every step timed (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, 3, 32, 32, generator=generator)
    return inputs, torch.randint(0, 10, (batch_size,), generator=generator)


def time_step(step: Callable[[], None], steps: int) -> float:
    """Milliseconds per step over ``steps`` steps, after one warm-up step."""
    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=DEFAULT_ARCH, choices=list(ARCHITECTURES),
                        help="the network (default: the shipped one)")
    add_step_arguments(parser, "variant")
    args = parser.parse_args()
    keep_freed_memory()
    inputs, labels = random_batch(args.batch_size)

    steps: dict[str, Callable[[], None]] = {}
    for name, (channels_last, compiled, _, recipe_optimizer) in VARIANTS.items():
        step = make_step(args.arch, args.norm, inputs, labels, channels_last, compiled, recipe_optimizer)
        try:
            step()  # compiles, for torch.compile
        except Exception as error:  # no C++ compiler, an unsupported platform, ...
            print(f"  {name}: skipped ({type(error).__name__}: {str(error).splitlines()[0][:100]})")
            continue
        steps[name] = step

    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            torch.backends.mkldnn.enabled = VARIANTS[name][2]
            try:
                times[name].append(time_step(step, args.steps))
            finally:
                torch.backends.mkldnn.enabled = True

    baseline = statistics.median(times[next(iter(VARIANTS))])
    print(f"{args.arch}/{args.norm}, batch {args.batch_size}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds of {args.steps} steps")
    for name, rounds in times.items():
        median = statistics.median(rounds)
        print(f"  {name:36s} {median:7.1f} ms/step  {median / baseline:5.2f}x the training loop's time")


if __name__ == "__main__":
    main()
