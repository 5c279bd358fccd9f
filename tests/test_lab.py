import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from artifacts.lab import EXPERIMENTS
from model import ARCHITECTURES, DEFAULT_ARCH, NORMS, build_model
from probes.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from training.config import TrainConfig
from training.data import Split
from training.lab import batch_size, calibration, coupling
from training.lab.__main__ import main
from training.lab.seeds import differences_over_seeds, mean_and_spread, spread
from training.statistics import welch_interval

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_at_severity_zero_is_the_identity(name: str, images: torch.Tensor) -> None:
    assert torch.equal(corrupt(images, name, 0), images)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_keep_uint8_images_and_grow_with_severity(name: str, images: torch.Tensor) -> None:
    distances = []
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, torch.Generator().manual_seed(1))
        assert out.dtype == torch.uint8 and out.shape == images.shape
        distances.append((out.float() - images.float()).abs().mean().item())
    assert distances[0] > 0.5, "severity 1 should change the images"
    assert distances[-1] > distances[0], distances


def test_noise_is_reproducible_with_a_generator(images: torch.Tensor) -> None:
    first = corrupt(images, "gaussian_noise", 3, torch.Generator().manual_seed(5))
    assert torch.equal(first, corrupt(images, "gaussian_noise", 3, torch.Generator().manual_seed(5)))


def test_bad_corruption_requests_are_refused(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity must be 0-5"):
        corrupt(images, "blur", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(images.float(), "blur", 1)


def test_only_batchnorm_in_train_mode_couples_the_samples_of_a_batch(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    models = {norm: build_model("residual", norm).eval() for norm in NORMS}
    test = Split(torch.cat([images] * 8), torch.zeros(64, dtype=torch.long))
    measured = coupling.measure(models, test, probes=4, trials=3, batch_size=8)["results"]
    for norm in NORMS:
        for mode in coupling.MODES:
            change = measured[norm][mode]["mean_max_abs_change"]
            if norm == "bn" and mode == "train":
                assert change > 1e-3, "BN in train mode should depend on the batch"
            else:
                assert change < 1e-5, f"{norm} in {mode} mode should not depend on the batch"


def test_expected_calibration_error_of_known_cases() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    # Always 100% sure of the wrong class: confidence 1, accuracy 0.
    wrong = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert calibration.reliability(wrong, labels)["ece"] == pytest.approx(1.0)
    # 75% sure and right three times in four: perfectly calibrated.
    hedged = torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.25]])
    result = calibration.reliability(hedged, labels)
    assert result["ece"] == pytest.approx(0.0, abs=1e-6)
    assert result["accuracy"] == 0.75 and sum(result["bins"]["count"]) == 4


def test_batch_size_sweep_keeps_finished_runs(synthetic_split: Split, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = dict(batch_sizes=(2, 8), train_images=32, epochs=1, seeds=(0,), progress=False)
    first = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                               **kwargs)
    assert set(first["runs"]) == {f"{norm}-{size}-seed0" for norm in NORMS for size in (2, 8)}
    base = TrainConfig().batch_size  # the architecture's rates are at our recipe's batch size
    assert first["runs"]["bn-8-seed0"]["lr"] == pytest.approx(ARCHITECTURES[DEFAULT_ARCH].lr["bn"] * 8 / base)
    assert first["runs"]["ln-8-seed0"]["lr"] == pytest.approx(ARCHITECTURES[DEFAULT_ARCH].lr["ln"] * 8 / base)
    assert first["setup"]["base_batch_size"] == base
    assert first["setup"]["lr_rule"] == f"base_lr[norm] * batch_size / {base}"
    # Muon's rate for the filters, where the recipe uses Muon, scales with the batch as the rates do.
    assert first["setup"]["base_muon_lr"] == ARCHITECTURES[DEFAULT_ARCH].muon_lr > 0
    assert first["runs"]["gn-8-seed0"]["muon_lr"] == pytest.approx(ARCHITECTURES[DEFAULT_ARCH].muon_lr * 8 / base)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    # As `python -m training.lab` does, the wall time is added to the written setup.
    results_file = tmp_path / "batch_size.json"
    written = json.loads(results_file.read_text())
    written["setup"]["seconds"] = 12.5
    results_file.write_text(json.dumps(written))
    monkeypatch.setattr(batch_size, "train", no_training)
    again = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                               **kwargs)
    assert again["runs"] == first["runs"]

    # A second seed extends the sweep: only its runs are trained, and every point gets a spread.
    trained_seeds = []

    def second_seed(config, *args, **kwargs):
        trained_seeds.append(config.seed)
        return SimpleNamespace(history=[{"train_accuracy": 0.5, "test_accuracy": 0.25 * (1 + config.seed),
                                         "seconds": 1.0}])

    monkeypatch.setattr(batch_size, "train", second_seed)
    extended = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                                  **{**kwargs, "seeds": (0, 1)})
    assert trained_seeds == [1] * (len(NORMS) * 2) and extended["setup"]["seeds"] == [0, 1]
    assert {key: run for key, run in extended["runs"].items() if key.endswith("seed0")} == first["runs"]
    for norm in NORMS:
        point = extended["points"][norm]["8"]
        seed0 = first["runs"][f"{norm}-8-seed0"]["test_accuracy"]
        assert point["n"] == 2 and point["mean"] == pytest.approx((seed0 + 0.5) / 2)
    assert extended["differences"]["2"]["bn-gn"]["seeds"] == 2

    # A sweep measured on another version of the network is not reused.
    retrained = []

    def record_training(config, *args, restart=False, **kwargs):
        retrained.append(restart)
        return SimpleNamespace(history=[{"train_accuracy": 0.5, "test_accuracy": 0.5, "seconds": 1.0}])

    monkeypatch.setattr(batch_size, "network_fingerprint", lambda model: "another version")
    monkeypatch.setattr(batch_size, "train", record_training)
    batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state", **kwargs)
    assert retrained == [True] * (len(NORMS) * 2)  # not resumed from that version's saved states either

    # --restart trains every run again even when the saved sweep matches.
    retrained.clear()
    batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                       restart=True, **kwargs)
    assert retrained == [True] * (len(NORMS) * 2)  # and their saved resume states are ignored too

    # Nor is a sweep trained with another recipe (here: another crop padding).
    retrained.clear()
    monkeypatch.setitem(ARCHITECTURES, DEFAULT_ARCH, dataclasses.replace(ARCHITECTURES[DEFAULT_ARCH], crop_padding=3))
    changed = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                                 **kwargs)
    assert retrained == [True] * (len(NORMS) * 2)
    assert changed["setup"]["recipe"]["crop_padding"] == 3


def test_every_experiment_runs_end_to_end_and_writes_results(cifar_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "lab"
    code = main(["all", "--data-dir", str(cifar_dir), "--checkpoint-dir", str(REPO / "checkpoints"),
                 "--output-dir", str(output), "--state-dir", str(tmp_path / "state"), "--test-images", "64",
                 "--train-images", "64", "--epochs", "1", "--batch-sizes", "8", "32", "--probes", "3",
                 "--rounds", "1", "--seeds", "2", "--no-progress"])
    assert code == 0
    for name in EXPERIMENTS:
        results = json.loads((output / f"{name}.json").read_text())
        assert results["experiment"] == name and results["setup"]["seconds"] >= 0
        assert (output / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    robustness = json.loads((output / "robustness.json").read_text())
    assert set(robustness["accuracy"]) == set(CORRUPTIONS)
    assert all(len(values) == 6 and all(0 <= v <= 1 for v in values)
               for per_norm in robustness["accuracy"].values() for values in per_norm.values())
    assert set(robustness["per_seed"]) == {str(seed) for seed in robustness["setup"]["seeds"]}
    assert set(robustness["differences"]) == {*CORRUPTIONS, "clean", "average"}
    sweep = json.loads((output / "batch_size.json").read_text())
    assert sweep["setup"]["seeds"] == [0, 1] and all(point["n"] == 2 for per_norm in sweep["points"].values()
                                                      for point in per_norm.values())
    cost = json.loads((output / "cost.json").read_text())["results"]
    assert cost["256"]["bn"]["train_step_vs_bn"] == 1.0 and cost["32"]["ln"]["forward_ms"] > 0


def test_lab_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibration", "--data-dir", str(tmp_path / "no-data"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 not found") and "Traceback" not in err


def test_lab_without_checkpoints_says_which_file_is_missing(cifar_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coupling", "--data-dir", str(cifar_dir), "--checkpoint-dir", str(tmp_path / "none"),
                 "--output-dir", str(tmp_path / "out"), "--test-images", "16"]) == 2
    assert "bn.safetensors does not exist" in capsys.readouterr().err


def test_a_measurement_over_seeds_is_the_mean_with_its_spread() -> None:
    measured = {
        0: {"setup": {"bins": 15}, "results": {"bn": {"ece": 0.10, "bins": {"count": [1, 3]}, "name": "x"}}},
        1: {"setup": {"bins": 15}, "results": {"bn": {"ece": 0.14, "bins": {"count": [3, 5]}, "name": "x"}}},
    }
    combined = mean_and_spread(measured)
    assert combined["setup"] == {"bins": 15, "seeds": [0, 1]}
    assert combined["results"]["bn"]["ece"] == pytest.approx(0.12)
    assert combined["std"]["results"]["bn"]["ece"] == pytest.approx(0.0282843, abs=1e-6)
    assert combined["results"]["bn"]["bins"]["count"] == [2, 4] and combined["results"]["bn"]["name"] == "x"
    assert spread(combined, "results", "bn", "bins", "count", 1) == pytest.approx(1.4142136, abs=1e-6)
    table = EXPERIMENTS["calibration"].table({**combined, "setup": {**combined["setup"], "test_images": 10}}
                                             | {"results": {"bn": {**combined["results"]["bn"], "accuracy": 0.8,
                                                                   "mean_confidence": 0.7, "nll": 0.5}}})
    assert table[2][0][1] == "12.0 ± 2.8%" and "Mean ± std over seeds 0, 1." in table[0]


def test_differences_over_seeds_come_from_each_seeds_own_numbers() -> None:
    measured = mean_and_spread({
        seed: {"setup": {}, "average": {"bn": bn, "gn": gn, "ln": ln}}
        for seed, (bn, gn, ln) in enumerate([(0.60, 0.74, 0.73), (0.62, 0.75, 0.72), (0.61, 0.73, 0.74)])
    })
    assert measured["per_seed"]["1"]["average"] == {"bn": 0.62, "gn": 0.75, "ln": 0.72}
    differences = differences_over_seeds(measured, "average")
    assert set(differences) == {"bn-gn", "bn-ln", "gn-ln"}
    assert differences["bn-gn"]["estimate"] == pytest.approx(-0.13) and differences["bn-gn"]["detected"]
    assert differences["gn-ln"]["estimate"] == pytest.approx(0.01) and not differences["gn-ln"]["detected"]
    # The same interval as Welch's on the raw values.
    expected = welch_interval([0.74, 0.75, 0.73], [0.73, 0.72, 0.74])
    assert (differences["gn-ln"]["low"], differences["gn-ln"]["high"]) == pytest.approx((expected.low, expected.high))


def test_a_sweep_saved_before_seeds_is_taken_as_seed_0(synthetic_split: Split, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = dict(batch_sizes=(2,), train_images=32, epochs=1, seeds=(0,), progress=False)
    first = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                               **kwargs)
    # The layout of a sweep written before seeds: the seed in the setup, runs keyed "<norm>-<batch>".
    old = json.loads((tmp_path / "batch_size.json").read_text())
    old["setup"] = {**{k: v for k, v in old["setup"].items() if k != "seeds"}, "seed": 0}
    old["runs"] = {f"{r['norm']}-{r['batch_size']}": {k: v for k, v in r.items() if k != "seed"}
                   for r in old["runs"].values()}
    for key in ("points", "differences"):
        del old[key]
    (tmp_path / "batch_size.json").write_text(json.dumps(old))
    table = EXPERIMENTS["batch_size"].table(old)  # still shown, one run per point
    assert table[2][0][1] == f"{100 * first['runs']['bn-2-seed0']['test_accuracy']:.1f}%"

    def no_training(*args, **kwargs):
        raise AssertionError("a run of the old sweep was trained again")

    monkeypatch.setattr(batch_size, "train", no_training)
    again = batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                               **kwargs)
    assert again["runs"] == first["runs"] and again["setup"]["seeds"] == [0]


def test_a_sweep_cut_short_names_only_the_seeds_it_trained(synthetic_split: Split, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def stop_in_seed_1(config, *args, **kwargs):
        calls.append(config.seed)
        if config.seed == 1:
            raise KeyboardInterrupt
        return SimpleNamespace(history=[{"train_accuracy": 0.5, "test_accuracy": 0.5, "seconds": 1.0}])

    monkeypatch.setattr(batch_size, "train", stop_in_seed_1)
    with pytest.raises(KeyboardInterrupt):
        batch_size.measure(synthetic_split, synthetic_split.subset(16), CPU, tmp_path, tmp_path / "state",
                           batch_sizes=(2,), train_images=32, epochs=1, seeds=(0, 1, 2), progress=False)
    written = json.loads((tmp_path / "batch_size.json").read_text())
    assert written["setup"]["seeds"] == [0] and len(written["runs"]) == len(NORMS)


def test_the_sweep_table_names_the_network_and_the_levers_it_was_trained_with() -> None:
    setup = {"arch": "residual", "recipe": {"weight_decay": 0.0005}, "train_images": 10_000, "epochs": 5,
             "base_lr": {"bn": 0.3, "gn": 0.2, "ln": 0.1}, "batch_sizes": [2], "test_images": 100, "seeds": [0]}
    before = EXPERIMENTS["batch_size"].table({"setup": setup, "points": {}})[0]
    assert before.startswith("The `residual` network with random flips and no EMA: each model trained")
    shipped = {**setup, "arch": "residual-gelu", "recipe": {"flips": "alternate", "ema_decay": 0.99}}
    after = EXPERIMENTS["batch_size"].table({"setup": shipped, "points": {}})[0]
    assert after.startswith("The `residual-gelu` network with alternating flips and an EMA of the weights "
                            "(decay 0.99): each model")
