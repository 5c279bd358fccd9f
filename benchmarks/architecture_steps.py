"""The CPU training step of each network in the registry, side by side in alternating rounds.

Where the ~50,000 parameters sit changes what a step costs far more than their number does:
layers at high resolution, and depthwise convs (few operations, much memory traffic), can be
slow on a CPU. Each network is run the way the training loop runs it (channels_last, oneDNN,
its recipe's settings) on the same random batch, with SGD for every weight even where the recipe
trains filters with Muon, so that the ratios compare networks, not optimizers (Muon's own cost:
``train_step_variants.py``); every network is timed once per
round, rounds alternate, and the median round of each is compared with the first network's.

    python benchmarks/architecture_steps.py --rounds 3
    python benchmarks/architecture_steps.py --archs residual separable --norm gn
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_step_variants import add_step_arguments, make_step, random_batch, time_step  # noqa: E402
from model import ARCHITECTURES, build_model, count_parameters  # noqa: E402
from training.loop import keep_freed_memory  # noqa: E402


@torch.no_grad()
def forward_flops_per_image(arch: str, norm: str, inputs: torch.Tensor) -> float:
    """Floating-point operations of one forward pass, per image (PyTorch's counter overcounts the backward
    pass of grouped, depthwise convs, so the forward pass is what is compared)."""
    with FlopCounterMode(display=False) as counter:
        build_model(arch, norm).eval()(inputs)
    return counter.get_total_flops() / len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES),
                        default=[name for name in ARCHITECTURES if name != "reference"],
                        help="the networks to time; the first is the one the others are compared with "
                        "(default: every network but the reference)")
    add_step_arguments(parser, "network")
    args = parser.parse_args()
    keep_freed_memory()
    inputs, labels = random_batch(args.batch_size)

    steps = {arch: make_step(arch, args.norm, inputs, labels, channels_last=True, compiled=False,
                            recipe_optimizer=False)
             for arch in args.archs}
    times: dict[str, list[float]] = {arch: [] for arch in steps}
    for _ in range(args.rounds):
        for arch, step in steps.items():
            times[arch].append(time_step(step, args.steps))

    baseline = statistics.median(times[args.archs[0]])
    print(f"{args.norm}, batch {args.batch_size}, CPU, {torch.get_num_threads()} threads, median of {args.rounds} "
          f"rounds of {args.steps} steps")
    for arch, rounds in times.items():
        median = statistics.median(rounds)
        flops = forward_flops_per_image(arch, args.norm, inputs[:8])
        print(f"  {arch:14s} {count_parameters(build_model(arch, args.norm)):7,d} parameters  "
              f"{flops / 1e6:5.1f} forward MFLOP/image  {median:7.1f} ms/step  "
              f"{median / baseline:5.2f}x {args.archs[0]}'s time")


if __name__ == "__main__":
    main()
