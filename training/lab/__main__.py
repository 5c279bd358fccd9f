"""python -m training.lab <experiment>: run lab experiments and write checkpoints/lab/.

The experiments are registered once, in ``artifacts.lab.EXPERIMENTS``; each names the
module whose ``run(context)`` measures it and whose ``figure(measured)`` draws it.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

from artifacts.folder import DEFAULT_CHECKPOINT_DIR, CheckpointFolder, LabFolder
from artifacts.lab import EXPERIMENTS, write_lab_results
from artifacts.weights import CheckpointError
from training.data import DataError, add_data_arguments, default_data_dir, load_split
from training.export import OutputError, check_writable
from training.figures import figure_png
from training.lab.batch_size import BATCH_SIZES, SEEDS
from training.lab.context import LabContext
from training.loop import ResumeMismatch, TrainingDiverged, keep_freed_memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.lab",
        description="Measure how BatchNorm, GroupNorm and LayerNorm differ, on the trained models "
        "(coupling, robustness, calibration), on fresh networks (cost) or by training new ones "
        "(batch_size). Each experiment writes <name>.json and <name>.png to --output-dir. "
        + " ".join(f"{name}: {experiment.summary}." for name, experiment in EXPERIMENTS.items()),
    )
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="which experiment to run")
    add_data_arguments(parser)
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR,
                        help="where the trained bn/gn/ln models are (default: checkpoints)")
    parser.add_argument("--output-dir", type=Path, default=CheckpointFolder(DEFAULT_CHECKPOINT_DIR).lab.root,
                        help="where results go (default: checkpoints/lab)")
    parser.add_argument("--state-dir", type=Path, default=Path("runs/lab"),
                        help="resume state of the batch-size sweep's training runs (default: runs/lab)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    parser.add_argument("--test-images", type=int, default=10_000,
                        help="evaluate on the first N test images (default: all 10,000)")
    parser.add_argument("--train-images", type=int, default=10_000,
                        help="batch_size: training images per run (default 10,000)")
    parser.add_argument("--epochs", type=int, default=5, help="batch_size: epochs per run (default 5)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                        help="batch_size: the batch sizes to train at (default: 2 8 32 128)")
    parser.add_argument("--seeds", type=int, default=SEEDS,
                        help=f"batch_size: seeds per point, from 0 up (default {SEEDS}); a sweep over more seeds "
                        "reuses the runs of one over fewer")
    parser.add_argument("--probes", type=int, default=100, help="coupling: test images to probe (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="cost: timing rounds (default 5)")
    parser.add_argument("--shipped-only", action="store_true",
                        help="coupling, robustness, calibration: measure the shipped (seed 0) models only, not "
                        "every seed's under <checkpoint-dir>/seeds/")
    parser.add_argument("--restart", action="store_true",
                        help="batch_size: ignore finished runs and saved resume state, train every run again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not 1 <= args.test_images <= 10_000:
        parser.error("--test-images must be between 1 and 10000")
    if min(args.batch_sizes) < 2:
        parser.error("--batch-sizes must all be at least 2 (BatchNorm needs two samples)")
    if args.train_images < max(args.batch_sizes):
        parser.error("--train-images must be at least the largest batch size")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if not 1 <= args.epochs <= 20:
        parser.error("--epochs must be between 1 and 20")
    return args


def run_experiment(name: str, context: LabContext) -> None:
    started = time.perf_counter()
    print(f"{name}:", flush=True)
    module = importlib.import_module(EXPERIMENTS[name].module)
    measured = module.run(context)
    measured["setup"]["seconds"] = round(time.perf_counter() - started, 1)
    folder = LabFolder(context.args.output_dir)
    write_lab_results(folder, name, measured, figure_png(module.figure(measured)))
    print(f"{name}: wrote {folder.results(name)} and {folder.figure(name)} ({time.perf_counter() - started:,.0f}s)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    keep_freed_memory()
    try:
        check_writable(args.output_dir)
        context = LabContext(args)
        splits = {split for name in names for split in EXPERIMENTS[name].splits}
        if splits:
            data_dir = args.data_dir or default_data_dir()
            context.data["test"] = load_split(data_dir, train=False, download=args.download).subset(args.test_images)
            if "train" in splits:
                context.data["train"] = load_split(data_dir, train=True)
        for name in names:
            run_experiment(name, context)
    except (DataError, CheckpointError, OutputError, ResumeMismatch, TrainingDiverged, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "the same command without --restart" if args.restart else "the same command"
        print(f"\ninterrupted: finished batch-size runs are kept; run {again} again to continue.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
