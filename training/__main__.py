"""python -m training: train the BN, GN and LN networks and write checkpoints/."""

import argparse
import sys
from pathlib import Path

from model import ARCHS, DEFAULT_ARCH, NORMS, build_model
from training.data import DataError, add_data_arguments, default_data_dir, load_split
from training.loop import (
    DEFAULT_CROP_PADDING,
    DEFAULT_LR,
    ResumeMismatch,
    TrainConfig,
    TrainingDiverged,
    keep_freed_memory,
    pick_device,
)
from training.parallel import Task, WorkerDied, plan_jobs, train_and_export, train_in_parallel


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the CIFAR-10 network with BatchNorm, GroupNorm and/or LayerNorm "
        "and write the checkpoints, plots and mistake gallery the app shows. Re-running "
        "an interrupted command continues from its last finished epoch.",
    )
    parser.add_argument("--norm", default="all", choices=[*NORMS, "all"],
                        help="which normalization to train (default: all three)")
    parser.add_argument("--arch", default=DEFAULT_ARCH, choices=list(ARCHS),
                        help="network: 'residual' (the project's own) or 'seed' (the reference); "
                        f"default {DEFAULT_ARCH}")
    add_data_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("checkpoints"),
                        help="where checkpoints, history, plots and the mistake gallery go (default: checkpoints)")
    parser.add_argument("--state-dir", type=Path, default=Path("runs"),
                        help="where the per-epoch resume state is kept (default: runs)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--jobs", type=int, default=None,
                        help="how many norms to train at once, each in its own process with an equal "
                        "share of the CPU threads (default: all of them on a CPU, one at a time on a GPU)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help=f"default {defaults.epochs} (at most 20)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"default {defaults.batch_size}")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak one-cycle learning rate (default: "
                        + "; ".join(f"{arch} " + ", ".join(f"{lr} for {norm}" for norm, lr in rates.items())
                                    for arch, rates in DEFAULT_LR.items()) + ")")
    parser.add_argument("--crop-padding", type=int, default=None,
                        help="pixels of reflect padding before the random 32x32 crop (default: "
                        + ", ".join(f"{pad} for {arch}" for arch, pad in DEFAULT_CROP_PADDING.items()) + ")")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help=f"on conv and linear weights only, default {defaults.weight_decay}")
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing,
                        help=f"default {defaults.label_smoothing}")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed, default {defaults.seed}")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="train on the first N training images only (quick trials)")
    parser.add_argument("--restart", action="store_true", help="ignore any saved state and train from scratch")
    parser.add_argument("--summary", action="store_true", help="print the model summary table and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    args = parser.parse_args(argv)
    if not 1 <= args.epochs <= 20:
        parser.error(f"--epochs must be between 1 and 20 (got {args.epochs})")
    if args.crop_padding is not None and not 0 <= args.crop_padding <= 16:
        parser.error(f"--crop-padding must be between 0 and 16 (got {args.crop_padding})")
    if args.weight_decay < 0:
        parser.error(f"--weight-decay must not be negative (got {args.weight_decay})")
    if not 0 <= args.label_smoothing < 1:
        parser.error(f"--label-smoothing must be at least 0 and below 1 (got {args.label_smoothing})")
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (BatchNorm needs two samples)")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.train_subset is not None and args.train_subset < args.batch_size:
        parser.error("--train-subset must be at least --batch-size")
    return args


def print_summaries(arch: str, norms: list[str]) -> None:
    from torchinfo import summary

    for norm in norms:
        print(summary(build_model(arch, norm), input_size=(1, 3, 32, 32), col_names=("output_size", "num_params"),
                      row_settings=("var_names",), verbose=0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    norms = list(NORMS) if args.norm == "all" else [args.norm]
    if args.summary:
        print_summaries(args.arch, norms)
        return 0
    from training.export import OutputError, check_writable, export_comparison

    try:
        device = pick_device(args.device)
        keep_freed_memory()
        check_writable(args.output_dir)
        check_writable(args.state_dir)
        data_dir = args.data_dir or default_data_dir()
        # Checks every file of the dataset (and downloads it if asked), so workers find it whole.
        test_split = load_split(data_dir, train=False, download=args.download)
        configs = [
            TrainConfig(arch=args.arch, norm=norm, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, crop_padding=args.crop_padding, weight_decay=args.weight_decay,
                        label_smoothing=args.label_smoothing, seed=args.seed,
                        train_subset=args.train_subset)
            for norm in norms
        ]
        jobs, threads = plan_jobs(len(configs), device, args.jobs)
        print(f"CIFAR-10 from {data_dir}; device {device}"
              + (f"; {jobs} norms at once, {threads} thread(s) each" if jobs > 1 else ""), flush=True)
        task = Task(data_dir, device, args.output_dir, args.state_dir, args.restart, not args.no_progress)
        if jobs > 1:
            train_in_parallel(configs, task, jobs, threads)
        else:
            train_split = load_split(data_dir, train=True)
            for config in configs:
                train_and_export(config, task, train_split, test_split)
        export_comparison(args.output_dir, test_split)
    except (DataError, ResumeMismatch, TrainingDiverged, OutputError, WorkerDied, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "the same command without --restart" if args.restart else "the same command"
        print(f"\ninterrupted: finished epochs are saved in {args.state_dir}/; "
              f"run {again} again to continue.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
