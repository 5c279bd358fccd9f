"""python -m training: train the BN, GN and LN networks and write checkpoints/."""

import argparse
import sys
from pathlib import Path

from artifacts.folder import DEFAULT_CHECKPOINT_DIR, CheckpointFolder, default_checkpoint_dir
from artifacts.trials import TrialsError, command_line, trial_record
from artifacts.weights import CheckpointError, read_metadata
from model import NORMS, build_model
from training.config import TrainConfig, add_config_arguments, config_from_arguments
from training.data import DataError, add_data_arguments, default_data_dir, load_split
from training.loop import ResumeMismatch, TrainingDiverged, describe_device, keep_freed_memory, pick_device
from training.parallel import Task, WorkerDied, plan_jobs, train_and_export, train_in_parallel


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[TrainConfig]]:
    """The command's options, and one training config per norm asked for."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        allow_abbrev=False,  # --record-trial writes the command down: every option spelled out
        description="Train the CIFAR-10 network with BatchNorm, GroupNorm and/or LayerNorm "
        "and write the checkpoints, plots and mistake gallery the app shows. Re-running "
        "an interrupted command continues from its last finished epoch.",
    )
    parser.add_argument("--norm", default="all", choices=[*NORMS, "all"],
                        help="which normalization to train (default: all three)")
    add_config_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR,
                        help="where checkpoints, history, plots and the mistake gallery go (default: checkpoints)")
    parser.add_argument("--state-dir", type=Path, default=Path("runs"),
                        help="where the per-epoch resume state is kept (default: runs)")
    parser.add_argument("--device", default="auto",
                        help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--jobs", type=int, default=None,
                        help="how many norms to train at once, each in its own process with an equal "
                        "share of the CPU threads (default: all of them on a CPU, one at a time on a GPU)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train this many seeds, from --seed up: seed 0 is the shipped model, the others go "
                        "to <output-dir>/seeds/<seed>/ for the numbers over seeds in results.json (default 1)")
    parser.add_argument("--record-trial", action="store_true",
                        help="when done, add this command and its models' settings and accuracies to the record "
                        "of every run behind a choice of setting "
                        f"({CheckpointFolder(default_checkpoint_dir()).search_journal}, study 'recorded'; "
                        f"{CheckpointFolder(default_checkpoint_dir()).trials} is rewritten from it)")
    parser.add_argument("--restart", action="store_true", help="ignore any saved state and train from scratch")
    parser.add_argument("--summary", action="store_true", help="print the model summary table and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    norms = list(NORMS) if args.norm == "all" else [args.norm]
    seeds = range(args.seed, args.seed + args.seeds)
    return args, [config_from_arguments(args, parser, norm=norm, seed=seed) for seed in seeds for norm in norms]


def print_summaries(arch: str, norms: list[str]) -> None:
    from torchinfo import summary

    for norm in norms:
        print(summary(build_model(arch, norm), input_size=(1, 3, 32, 32), col_names=("output_size", "num_params"),
                      row_settings=("var_names",), verbose=0))


def record_trial(argv: list[str], configs: list[TrainConfig], output_dir: Path, device: str) -> None:
    folder = CheckpointFolder(output_dir)
    several_seeds = len({config.seed for config in configs}) > 1
    models = {f"{config.norm}-seed{config.seed}" if several_seeds else config.norm:
              read_metadata(folder.seed_folder(config.seed).weights(config.norm)) for config in configs}
    from training.search.record import record_run, recorded_study, write_trials_file
    from training.search.storage import HeartbeatJournalStorage

    project = CheckpointFolder(default_checkpoint_dir())
    storage = HeartbeatJournalStorage(project.search_journal)
    record_run(recorded_study(storage), trial_record(command_line("python -m training", argv), device, models))
    write_trials_file(storage, project.trials)
    print(f"recorded the trial in {project.search_journal} (study 'recorded') and {project.trials}")


def main(argv: list[str] | None = None) -> int:
    args, configs = parse_args(argv)
    if args.summary:
        print_summaries(args.arch, list(dict.fromkeys(config.norm for config in configs)))
        return 0
    from training.export import OutputError, check_writable, export_comparison, finished

    if args.record_trial:
        import training.search  # noqa: F401 - before any training: says what to install if Optuna is missing
    try:
        device = pick_device(args.device)
        keep_freed_memory()
        check_writable(args.output_dir)
        check_writable(args.state_dir)
        data_dir = args.data_dir or default_data_dir()
        # Checks every file of the dataset (and downloads it if asked), so workers find it whole.
        test_split = load_split(data_dir, train=False, download=args.download)
        # At most one process per norm: the seeds queue behind them.
        jobs, threads = plan_jobs(len({config.norm for config in configs}), device, args.jobs)
        print(f"CIFAR-10 from {data_dir}; device {device}"
              + (f"; {jobs} norms at once, {threads} thread(s) each" if jobs > 1 else ""), flush=True)
        task = Task(data_dir, device, args.output_dir, args.state_dir, args.restart, not args.no_progress)
        if not args.restart:
            done = [config for config in configs if finished(config, args.output_dir)]
            for config in done:
                print(f"{config.arch}/{config.norm} seed {config.seed}: already trained in {args.output_dir}, "
                      "skipped (--restart trains it again)", flush=True)
        else:
            done = []
        to_train = [config for config in configs if config not in done]
        if jobs > 1 and len(to_train) > 1:
            train_in_parallel(to_train, task, jobs, threads)
        elif to_train:
            train_split = load_split(data_dir, train=True)
            for config in to_train:
                train_and_export(config, task, train_split, test_split)
        export_comparison(args.output_dir, test_split)
        if args.record_trial:
            record_trial(argv if argv is not None else sys.argv[1:], configs, args.output_dir,
                         describe_device(device, threads) + (f", {jobs} runs at once" if jobs > 1 else ""))
    except (DataError, ResumeMismatch, TrainingDiverged, OutputError, WorkerDied, TrialsError, CheckpointError,
            ValueError) as error:
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
