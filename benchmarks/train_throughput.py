"""Training images per second: this project's pipeline against the common one, side by side.

This pipeline: CIFAR-10 held as uint8 tensors on the device, crop/flip/normalize as
batched tensor ops, channels_last. The common pipeline: torchvision's CIFAR10 with PIL
transforms (RandomCrop, RandomHorizontalFlip, ToTensor, Normalize) and a DataLoader
with worker processes. Same network, batch size, optimizer and number of steps; the two
are timed alternately, ``--rounds`` times each, and the best round of each is compared.
The training process keeps freed memory for reuse (as `python -m training` does), which
speeds up both networks' steps alike; the common pipeline's workers are separate processes.

    python benchmarks/train_throughput.py --data-dir data
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import ARCHITECTURES, DEFAULT_ARCH, MEAN, STD, build_model  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import (  # noqa: E402
    Split,
    augmented_batches,
    default_data_dir,
    load_split,
    reflect_pad,
)
from training.loop import keep_freed_memory, pick_device  # noqa: E402


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_steps(step_batches, model: nn.Module, steps: int, device: torch.device) -> float:
    """Images per second over ``steps`` SGD steps (after two warm-up steps)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    iterator = iter(step_batches)
    for inputs, labels in itertools.islice(iterator, 2):
        sgd_step(model, optimizer, inputs, labels)
    seen = 0
    started = time.perf_counter()
    for inputs, labels in itertools.islice(iterator, steps):
        sgd_step(model, optimizer, inputs, labels)
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def batch_milliseconds(step_batches, steps: int, device: torch.device) -> float:
    """Milliseconds to build one batch, without training on it."""
    iterator = iter(step_batches)
    next(iterator)
    started = time.perf_counter()
    for _ in itertools.islice(iterator, steps):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1000 / steps


def training_flops_per_image(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Floating-point operations of one forward and backward pass, per image."""
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(inputs), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(labels)


def project_batches(split: Split, batch_size: int, padding: int, device: torch.device):
    split = split.to(device)
    padded = reflect_pad(split.images, padding)
    generator = torch.Generator().manual_seed(0)
    while True:
        yield from augmented_batches(padded, split.labels, batch_size, generator)


def common_batches(data_dir: Path, batch_size: int, padding: int, workers: int, device: torch.device):
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=padding), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD),
    ])
    dataset = datasets.CIFAR10(str(data_dir), train=True, transform=transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    while True:
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--arch", default=DEFAULT_ARCH, choices=list(ARCHITECTURES),
                        help="the network (default: the shipped one)")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per pipeline")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the common pipeline")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if min(args.rounds, args.steps, args.batch_size) < 1:
        parser.error("--rounds, --steps and --batch-size must be at least 1")
    device = pick_device(args.device)
    keep_freed_memory()
    torch.manual_seed(0)
    ours_model = build_model(args.arch, args.norm).to(device, memory_format=torch.channels_last)
    common_model = build_model(args.arch, args.norm).to(device)
    # Training's padding in both; the common pipeline pads with zeros (RandomCrop's default),
    # this one by reflection, which costs the same.
    padding = TrainConfig(arch=args.arch).crop_padding
    ours = project_batches(load_split(args.data_dir, train=True), args.batch_size, padding, device)
    common = common_batches(args.data_dir, args.batch_size, padding, args.workers, device)
    results: dict[str, list[float]] = {"this project": [], "common": []}
    for _ in range(args.rounds):
        results["this project"].append(time_steps(ours, ours_model, args.steps, device))
        results["common"].append(time_steps(common, common_model, args.steps, device))
    best = {name: max(rates) for name, rates in results.items()}
    building = batch_milliseconds(ours, args.steps, device)
    flops = training_flops_per_image(ours_model, *next(ours))
    print(f"{args.arch}/{args.norm}, batch {args.batch_size}, {args.steps} steps a round, device {device}")
    for name, rates in results.items():
        print(f"  {name:13s} {best[name]:8,.0f} img/s  (rounds: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"  ratio: {best['this project'] / best['common']:.2f}x")
    step = args.batch_size / best["this project"] * 1000
    print(f"  {flops / 1e6:.1f} MFLOP per training image: this project runs at "
          f"{flops * best['this project'] / 1e9:.0f} GFLOP/s")
    print(f"  this project builds a batch in {building:.1f} ms, {building / step:.1%} of its {step:.0f} ms step")


if __name__ == "__main__":
    main()
