import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import training.__main__ as training_cli
from artifacts.folder import CheckpointFolder
from artifacts.mistakes import load_mistakes
from artifacts.weights import load_checkpoint, save_checkpoint
from model import ARCHITECTURES, CLASSES, DEFAULT_ARCH, NORMS, ResidualNet, build_model, network_fingerprint
from training.__main__ import main
from training.config import ConfigError, TrainConfig, add_config_arguments
from training.data import Split, validation_indices
from training.evaluate import evaluate
from training.export import export_comparison, export_norm
from training.loop import (
    ResumeMismatch,
    TrainingDiverged,
    keep_freed_memory,
    make_optimizer,
    state_path,
    train,
)
from training.parallel import plan_jobs
from training.summary import main as summary_main

CPU = torch.device("cpu")
TINY = TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=3)


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_short_training_on_real_images_beats_chance(norm: str, cifar_train: Split, cifar_test: Split,
                                                   tmp_path: Path) -> None:
    config = TrainConfig(norm=norm, epochs=3, batch_size=128, lr=0.2, train_subset=4000)
    result = train(config, cifar_train, cifar_test.subset(2000), CPU, tmp_path, progress=False)
    assert result.history[-1]["test_accuracy"] > 0.20  # twice chance (0.10); 2,000 test images
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_resuming_after_an_interruption_ends_with_the_same_weights(synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, norm="bn")
    straight = train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "a", progress=False)

    def interrupt_after_first_epoch(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "b",
              on_epoch_end=interrupt_after_first_epoch, progress=False)
    assert torch.load(state_path(tmp_path / "b", config), weights_only=True)["epoch"] == 1
    trained_epochs: list[int] = []
    resumed = train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "b",
                    on_epoch_end=trained_epochs.append, progress=False)

    assert trained_epochs == [2, 3]  # only the epochs after the interruption: the first was not trained again

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]


def test_resuming_with_other_settings_is_refused(synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, norm="gn", epochs=1)
    train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    with pytest.raises(ResumeMismatch, match="batch_size: saved 64, now 32.*--restart"):
        train(replace(config, batch_size=32), synthetic_split, synthetic_split.subset(64), CPU, tmp_path,
              progress=False)


@pytest.mark.parametrize("saved_by", ["previous plan", "moved pool"])
def test_state_of_another_network_version_is_refused_in_one_line(saved_by: str, synthetic_split: Split,
                                                                 tmp_path: Path) -> None:
    config = replace(TINY, epochs=1)
    train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    state_file = state_path(tmp_path, config)
    state = torch.load(state_file, weights_only=True)
    # Same settings, saved by an earlier version of the network: one with other widths,
    # or one whose weights all have the same shapes but with a pool in another place.
    moved_pool, previous = ("c24", "c32p", "c32p", "r32", "c48p"), ("c16", "c32p", "c32p", "r32", "c56p")
    plan = moved_pool if saved_by == "moved pool" else previous
    other = ResidualNet(config.norm, ARCHITECTURES[config.arch].gn_groups, plan=plan)
    state["model"] = other.state_dict()
    state["network"] = network_fingerprint(other)
    torch.save(state, state_file)
    with pytest.raises(ResumeMismatch, match="another version of this network.*--restart") as refused:
        train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    assert "\n" not in str(refused.value)


def test_a_file_that_is_not_a_training_state_is_refused(synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, epochs=1)
    torch.save(torch.zeros(3), state_path(tmp_path, config))
    with pytest.raises(ResumeMismatch, match="not a training state.*--restart"):
        train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "foreign_scheduler"])
def test_unusable_saved_state_is_refused_with_advice(damage: str, synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, epochs=2)
    train(replace(config, epochs=1), synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    state_file = state_path(tmp_path, config)
    if damage == "truncated":
        state_file.write_bytes(state_file.read_bytes()[:100])
    else:  # same settings, but saved by code with another kind of scheduler
        state = torch.load(state_file, weights_only=True)
        state["scheduler"] = {"total_steps": 10, "last_epoch": 3}
        torch.save(state, state_file)
    with pytest.raises(ResumeMismatch, match="--restart"):
        train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path, restart=True, progress=False)


def test_diverging_loss_stops_and_keeps_the_last_good_state(synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, norm="ln", epochs=2)
    train(replace(config, epochs=1), synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    state_file = state_path(tmp_path, config)
    state_file.unlink()
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf).*Try a lower --lr"):
        train(replace(config, lr=1e30), synthetic_split, synthetic_split.subset(64), CPU, tmp_path, progress=False)
    assert not state_file.exists()  # the diverged epoch was never saved


class FixedLogits(torch.nn.Module):
    """A "network" that answers the logits it was given, one row per image, in order."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits, requires_grad=False)
        self.served = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.logits[self.served : self.served + len(x)]
        self.served += len(x)
        return rows


def test_evaluate_scores_known_logits_exactly() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    logits = torch.full((10, 10), -5.0)
    predicted = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])  # right on the first 7 of 10
    logits[torch.arange(10), predicted] = 5.0
    split = Split(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), labels)
    loss, accuracy = evaluate(FixedLogits(logits), split, batch_size=4)  # batches of 4, 4 and 2
    assert accuracy == 0.7
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_export_writes_checkpoints_whose_accuracy_is_what_they_score(synthetic_split: Split, cifar_test: Split,
                                                                    tmp_path: Path) -> None:
    test_split = cifar_test.subset(300)
    for norm in ["bn", "gn", "ln"]:  # seed 0: the shipped models, exported in full
        result = train(replace(TINY, norm=norm, epochs=1, seed=0), synthetic_split, test_split, CPU,
                       tmp_path / "state", progress=False)
        export_norm(result, test_split, tmp_path / "out")
    export_comparison(tmp_path / "out", test_split)
    out = tmp_path / "out"
    for norm in ["bn", "gn", "ln"]:
        model, metadata = load_checkpoint(out / f"{norm}.safetensors")
        assert metadata["test_accuracy"] == evaluate(model, test_split)[1]
        recipe = {key: getattr(TINY, key) for key in ("batch_size", "lr", "crop_padding", "weight_decay",
                                                      "label_smoothing")}
        assert {key: metadata[key] for key in recipe} == recipe
        for suffix in ["_history.json", "_confusion.png", "_misclassified.png"]:
            assert (out / f"{norm}{suffix}").stat().st_size > 0
    assert (out / "curves.png").exists() and (out / "results.json").exists()
    assert len(list((out / "examples").glob("*.png"))) == 10
    mistakes = load_mistakes(out / "mistakes.npz")
    count = len(mistakes)
    assert mistakes.images.shape == (count, 32, 32, 3) and mistakes.probabilities.shape == (count, 3, 10)
    assert count > 0 and (~mistakes.correct).any(1).all()
    images = test_split.images.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(mistakes.images, images[mistakes.test_index])  # stored pixel for pixel
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_cli_trains_and_exports_a_tiny_run(cifar_dir: Path, tmp_path: Path) -> None:
    code = main(["--norm", "gn", "--epochs", "1", "--batch-size", "100", "--train-subset", "500",
                 "--data-dir", str(cifar_dir), "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state"), "--no-progress"])
    assert code == 0
    assert (tmp_path / "out" / "gn.safetensors").exists() and (tmp_path / "out" / "mistakes.npz").exists()


def test_cli_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "no-data"), "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 not found") and "Traceback" not in err

    (tmp_path / "a-file").write_text("")
    assert main(["--output-dir", str(tmp_path / "a-file" / "out")]) == 2
    assert "cannot write to" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(["--norm", "instance"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'instance'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--epochs", "50"])
    assert "between 1 and 20" in capsys.readouterr().err
    for option, value, message in [("--crop-padding", "40", "between 0 and 16"),
                                   ("--weight-decay", "-1e-4", "must not be negative"),
                                   ("--label-smoothing", "1", "below 1"),
                                   ("--gn-groups", "3", "3 groups do not divide every width")]:
        with pytest.raises(SystemExit):
            main([f"{option}={value}"])
        assert message in capsys.readouterr().err


def test_recipe_options_reach_the_training_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = []
    monkeypatch.setattr(training_cli, "load_split", lambda *args, **kwargs: None)
    monkeypatch.setattr(training_cli, "train_and_export", lambda config, *args, **kwargs: trained.append(config))
    monkeypatch.setattr("training.export.export_comparison", lambda *args: None)
    assert main(["--norm", "ln", "--jobs", "1", "--crop-padding", "0", "--weight-decay", "1e-3",
                 "--label-smoothing", "0", "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state")]) == 0
    assert [(c.norm, c.crop_padding, c.weight_decay, c.label_smoothing) for c in trained] == [("ln", 0, 1e-3, 0.0)]


@pytest.mark.parametrize(("restart", "advice"), [([], "run the same command again"),
                                                 (["--restart"], "run the same command without --restart again")])
def test_interrupt_says_how_to_continue(restart: list[str], advice: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_cli, "load_split", interrupted)
    code = main(["--norm", "bn", "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
                 *restart])
    assert code == 130 and advice in capsys.readouterr().err


def test_every_architecture_and_norm_has_a_default_learning_rate_and_crop_padding() -> None:
    assert all(set(arch.lr) == set(NORMS) for arch in ARCHITECTURES.values())
    assert TrainConfig(arch="reference", norm="ln").lr == ARCHITECTURES["reference"].lr["ln"]
    assert TrainConfig(norm="bn", lr=0.05).lr == 0.05
    # The reference network keeps the crops its shipped checkpoints were trained with.
    assert TrainConfig(arch="reference").crop_padding == 4
    assert TrainConfig().crop_padding == ARCHITECTURES["residual"].crop_padding
    assert TrainConfig(crop_padding=0).crop_padding == 0


def test_summary_prints_the_layer_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--summary", "--arch", "reference", "--norm", "bn"]) == 0
    table = capsys.readouterr().out
    assert "Output Shape" in table and "39,490" in table


@pytest.mark.parametrize(("runs", "device", "jobs", "threads", "planned"), [
    (3, "cpu", None, 2, (3, 1)),  # all three at once, sharing two cores
    (3, "cpu", None, 8, (3, 2)),  # never more threads than the CPU has
    (3, "cpu", 2, 8, (2, 4)),
    (3, "cpu", 9, 4, (3, 1)),  # never more jobs than runs
    (1, "cpu", None, 2, (1, 2)),
    (3, "cuda", None, 16, (1, 16)),  # a GPU trains one norm at a time
])
def test_job_plan_shares_the_cpu_threads(runs: int, device: str, jobs: int | None, threads: int,
                                         planned: tuple[int, int]) -> None:
    assert plan_jobs(runs, torch.device(device), jobs, threads) == planned


def test_norms_trained_side_by_side_match_one_after_another(cifar_dir: Path, tmp_path: Path) -> None:
    common = ["--norm", "all", "--epochs", "1", "--batch-size", "100", "--train-subset", "300",
              "--data-dir", str(cifar_dir), "--no-progress"]
    assert main([*common, "--jobs", "3", "--output-dir", str(tmp_path / "side"),
                 "--state-dir", str(tmp_path / "side-state")]) == 0
    # Float sums depend on the thread count, so one after another uses the workers' count.
    _, threads = plan_jobs(3, CPU, 3)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert main([*common, "--jobs", "1", "--output-dir", str(tmp_path / "serial"),
                     "--state-dir", str(tmp_path / "serial-state")]) == 0
    finally:
        torch.set_num_threads(default_threads)
    for norm in ["bn", "gn", "ln"]:
        side = load_file(tmp_path / "side" / f"{norm}.safetensors")
        serial = load_file(tmp_path / "serial" / f"{norm}.safetensors")
        assert side.keys() == serial.keys()
        for name, tensor in side.items():
            assert torch.equal(tensor, serial[name]), f"{norm}: {name}"
    assert (tmp_path / "side" / "results.json").exists()


def test_an_error_in_a_worker_is_one_clear_line(cifar_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--norm", "all", "--jobs", "3", "--epochs", "1", "--batch-size", "100", "--train-subset", "200",
                 "--lr", "1e30", "--data-dir", str(cifar_dir), "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the loss became") and "Try a lower --lr" in err and "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator setting is Linux only")
def test_freed_memory_setting_takes_effect_on_linux() -> None:
    assert keep_freed_memory() is True


def test_the_published_recipe_is_the_published_notebooks_value_by_value() -> None:
    published = TrainConfig(arch="reference", recipe="published", norm="gn")
    # optim.SGD(lr=0.01, momentum=0.9), batch 128, no augmentation, nll_loss on log_softmax (no smoothing).
    assert (published.batch_size, published.lr, published.momentum, published.weight_decay,
            published.label_smoothing, published.crop_padding) == (128, 0.01, 0.9, 0.0, 0.0, 0)
    assert published.flips == "none" and not published.nesterov
    assert published.mean == (0.5, 0.5, 0.5) and published.std == (0.5, 0.5, 0.5)  # Normalize((0.5,)*3, (0.5,)*3)
    assert published.gn_groups == 2 and published.epochs == 20
    assert TrainConfig(recipe="published", lr=0.05, batch_size=64).lr == 0.05  # options still override it
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), published, steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [0.01] * 100  # no scheduler: constant for every step
    assert not optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.9
    assert TrainConfig().as_dict() == TrainConfig(recipe="ours").as_dict()  # states saved before recipes match
    with pytest.raises(ConfigError, match="unknown recipe"):
        TrainConfig(recipe="plain")


def test_one_seeded_epoch_of_the_published_recipe_runs_and_records_its_inputs(cifar_train: Split, cifar_test: Split,
                                                                             tmp_path: Path) -> None:
    config = TrainConfig(arch="reference", recipe="published", norm="bn", epochs=1, train_subset=512, seed=1)
    runs = [train(config, cifar_train, cifar_test.subset(500), CPU, tmp_path / name, progress=False)
            for name in ("a", "b")]
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]  # seeded: the same run twice
    assert state_path(tmp_path / "a", config).name == "reference-published-bn-seed1.pt"
    metadata = export_norm(runs[0], cifar_test.subset(500), tmp_path / "out")
    assert metadata["recipe"] == "published" and metadata["mean"] == [0.5] * 3 and metadata["std"] == [0.5] * 3
    model, _ = load_checkpoint(tmp_path / "out" / "seeds" / "1" / "bn.safetensors")
    # Scored with the recipe's own input normalization, not the dataset's statistics.
    assert metadata["test_accuracy"] == evaluate(model, cifar_test.subset(500), mean=(0.5,) * 3, std=(0.5,) * 3)[1]


def test_several_seeds_end_to_end_give_numbers_over_seeds(cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--norm", "all", "--seeds", "2", "--epochs", "1", "--batch-size", "100", "--train-subset", "200",
                 "--data-dir", str(cifar_dir), "--output-dir", str(out), "--state-dir", str(tmp_path / "state"),
                 "--no-progress"]) == 0
    for norm in NORMS:  # seed 0 is shipped in full; seed 1 keeps its weights and history only
        assert (out / f"{norm}_confusion.png").exists()
        assert (out / "seeds" / "1" / f"{norm}.safetensors").exists()
        assert not (out / "seeds" / "1" / f"{norm}_confusion.png").exists()
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == set(NORMS) and results["models"]["bn"]["seed"] == 0
    for norm in NORMS:
        runs = results["over_seeds"][norm]["runs"]
        assert [run["seed"] for run in runs] == [0, 1]
        mean = results["over_seeds"][norm]["test_accuracy"]["mean"]
        assert mean == pytest.approx(sum(run["test_accuracy"] for run in runs) / 2)
    assert set(results["differences"]) == {"bn-gn", "bn-ln", "gn-ln"}
    assert all("2 seeds" in d["verdict"] for d in results["differences"].values())
    # The summary rebuilds the same file from the checkpoints alone.
    before = results
    assert summary_main(["--checkpoint-dir", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == before


def test_a_validation_run_records_its_split_and_accuracy(cifar_dir: Path, cifar_train: Split, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import training.parallel

    seen = []

    def spy(config, train_split, eval_split, *args, **kwargs):
        seen.append((train_split, eval_split))
        return train(config, train_split, eval_split, *args, **kwargs)

    monkeypatch.setattr(training.parallel, "train", spy)
    assert main(["--norm", "ln", "--validation", "--epochs", "1", "--batch-size", "100", "--train-subset", "200",
                 "--data-dir", str(cifar_dir), "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state"), "--no-progress"]) == 0
    [(trained_on, evaluated_on)] = seen
    # Trained on the other 45,000 images, none of them a validation image, and evaluated on the 5,000.
    held_out = validation_indices(cifar_train.labels)
    kept = torch.ones(50_000, dtype=torch.bool)
    kept[held_out] = False
    assert len(trained_on) == 45_000 and len(evaluated_on) == 5_000
    assert torch.equal(trained_on.images, cifar_train.images[kept])
    assert torch.equal(evaluated_on.images, cifar_train.images[held_out])
    metadata = json.loads((tmp_path / "out" / "results.json").read_text())["models"]["ln"]
    assert metadata["validation_split"] == "1bc634292fd0" and 0 <= metadata["validation_accuracy"] <= 1
    history = json.loads((tmp_path / "out" / "ln_history.json").read_text())["epochs"]
    assert "val_accuracy" in history[0] and "test_accuracy" not in history[0]


def test_a_group_count_reaches_the_network_and_its_checkpoint_and_the_trial_record(
        cifar_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "project"))
    assert main(["--norm", "gn", "--gn-groups", "8", "--epochs", "1", "--batch-size", "100", "--train-subset", "200",
                 "--validation", "--data-dir", str(cifar_dir), "--output-dir", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state"), "--no-progress", "--record-trial"]) == 0
    [trial] = json.loads((tmp_path / "project" / "trials.json").read_text())["trials"]
    assert trial["command"] == ("python -m training --norm gn --gn-groups 8 --epochs 1 --batch-size 100 "
                                "--train-subset 200 --validation --data-dir PATH --output-dir PATH --state-dir PATH "
                                "--no-progress --record-trial")
    assert trial["models"]["gn"]["gn_groups"] == 8 and 0 <= trial["models"]["gn"]["validation_accuracy"] <= 1
    # GroupNorm's weights have the same shapes at any group count: only the metadata tells them apart.
    model, metadata = load_checkpoint(tmp_path / "out" / "gn.safetensors")
    assert metadata["gn_groups"] == 8
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    default = TrainConfig(norm="gn")
    assert default.gn_groups == ARCHITECTURES[default.arch].gn_groups and "gn_groups" not in default.as_dict()


def test_a_rerun_skips_the_runs_already_in_the_output_folder(cifar_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--norm", "bn", "--epochs", "1", "--batch-size", "100", "--train-subset", "200", "--jobs", "1",
              "--data-dir", str(cifar_dir), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main([*common, "--state-dir", str(tmp_path / "state")]) == 0
    weights = tmp_path / "out" / "bn.safetensors"
    first = weights.read_bytes()
    capsys.readouterr()
    # Another machine: no per-epoch states, but the finished checkpoint is there. Seed 1 is new.
    assert main([*common, "--seeds", "2", "--state-dir", str(tmp_path / "other-state")]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT_ARCH}/bn seed 0: already trained" in out and "seed 1: already" not in out
    assert weights.read_bytes() == first and (tmp_path / "out" / "seeds" / "1" / "bn.safetensors").exists()
    assert not (tmp_path / "other-state" / f"{DEFAULT_ARCH}-bn.pt").exists()  # seed 0 was not trained again
    # Other settings are another run; --restart trains a finished one again.
    assert main([*common, "--lr", "0.05", "--state-dir", str(tmp_path / "state-lr")]) == 0
    assert "already trained" not in capsys.readouterr().out
    assert main([*common, "--lr", "0.05", "--restart", "--state-dir", str(tmp_path / "state-lr")]) == 0
    assert "already trained" not in capsys.readouterr().out


def test_the_summary_leaves_out_a_seed_trained_with_other_levers_or_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = CheckpointFolder(tmp_path)
    shipped = TrainConfig(norm="ln")
    common = {"arch": shipped.arch, "norm": "ln", "train_accuracy": 0.9, "classes": list(CLASSES), "epochs": 20,
              "parameters": 1, "mean": list(shipped.mean), "std": list(shipped.std)}
    # Seed 2: before the search's levers; seed 3: another learning rate; seed 4: a shorter run.
    other_rate, shorter = {**shipped.levers(), "lr": 0.05}, {**shipped.levers(), "epochs": 8}
    for seed, settings in ((0, shipped.levers()), (1, shipped.levers()), (2, {}), (3, other_rate), (4, shorter)):
        metadata = {**common, **settings, "seed": seed, "test_accuracy": 0.8 + seed / 100}
        save_checkpoint(build_model(shipped.arch, "ln"), folder.seed_folder(seed).weights("ln"), metadata)
    assert summary_main(["--checkpoint-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("trained with other settings") == 3
    runs = json.loads(folder.results.read_text())["over_seeds"]["ln"]["runs"]
    assert [run["seed"] for run in runs] == [0, 1]


def test_the_help_gives_the_defaults_each_recipe_trains_with() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {action.dest: " ".join(action.help.split()) for action in parser._actions}
    ours, published = TrainConfig(), TrainConfig(recipe="published")

    def text(value: object) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
            else str(value)

    for name in ("batch_size", "weight_decay", "label_smoothing", "schedule", "flips", "ema_decay", "whiten_init"):
        assert f"default {text(getattr(ours, name))}" in helps[name], name
        assert f"published recipe: {text(getattr(published, name))}" in helps[name], name
