import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from artifacts.folder import CheckpointFolder
from artifacts.weights import CheckpointError, load_checkpoint, save_checkpoint
from model import build_model, count_parameters
from tests.conftest import CHECKPOINTS


def metadata_for(model: torch.nn.Module, arch: str, norm: str) -> dict:
    return {
        "arch": arch, "norm": norm, "parameters": count_parameters(model), "epochs": 1,
        "train_accuracy": 0.5, "test_accuracy": 0.5, "mean": [0.5] * 3, "std": [0.25] * 3,
        "classes": [str(i) for i in range(10)], "seed": 0,
    }


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_round_trip_keeps_weights_and_metadata(tmp_path: Path, norm: str) -> None:
    torch.manual_seed(0)
    model = build_model("residual", norm).eval()
    if norm == "bn":  # make running statistics differ from their initial values
        model.train()(torch.randn(16, 3, 32, 32))
        model.eval()
    path = tmp_path / f"{norm}.safetensors"
    save_checkpoint(model, path, metadata_for(model, "residual", norm))
    loaded, metadata = load_checkpoint(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert metadata["norm"] == norm and metadata["parameters"] == count_parameters(model)
    assert not loaded.training
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_checkpoint_holds_no_pickle(tmp_path: Path) -> None:
    model = build_model("reference", "gn")
    path = tmp_path / "gn.safetensors"
    save_checkpoint(model, path, metadata_for(model, "reference", "gn"))
    assert_is_safetensors(path)
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_length])
    assert json.loads(header["__metadata__"]["arch"]) == "reference"


def assert_is_safetensors(path: Path) -> None:
    """A safetensors file from its first bytes: an 8-byte header length, then JSON; never a pickle or torch zip."""
    data = path.read_bytes()
    assert not data.startswith(b"\x80") and not data.startswith(b"PK\x03\x04")  # pickle protocol 2+, torch.save
    header_length = int.from_bytes(data[:8], "little")
    assert 8 + header_length <= len(data) and data[8:9] == b"{"
    json.loads(data[8 : 8 + header_length])


def test_the_shipped_checkpoints_hold_no_pickle() -> None:
    for norm in ("bn", "gn", "ln"):
        assert_is_safetensors(CheckpointFolder(CHECKPOINTS).weights(norm))


def test_metadata_that_does_not_match_the_network_is_refused(tmp_path: Path) -> None:
    seed_model = build_model("reference", "bn")
    path = tmp_path / "bn.safetensors"
    # Weights of the seed network labelled as the residual one (same parameter count claimed).
    metadata = metadata_for(seed_model, "residual", "bn")
    metadata["parameters"] = count_parameters(build_model("residual", "bn"))
    save_checkpoint(seed_model, path, metadata)
    with pytest.raises(CheckpointError, match="does not match the residual/bn network"):
        load_checkpoint(path)


def test_wrong_parameter_count_is_refused(tmp_path: Path) -> None:
    model = build_model("residual", "ln")
    metadata = metadata_for(model, "residual", "ln")
    metadata["parameters"] += 1
    save_checkpoint(model, tmp_path / "ln.safetensors", metadata)
    with pytest.raises(CheckpointError, match="different version of the network"):
        load_checkpoint(tmp_path / "ln.safetensors")


def test_unknown_arch_missing_metadata_missing_and_garbage_files(tmp_path: Path) -> None:
    model = build_model("residual", "bn")
    metadata = metadata_for(model, "resnet50", "bn")
    save_checkpoint(model, tmp_path / "a.safetensors", metadata)
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(tmp_path / "a.safetensors")

    save_file({"w": torch.zeros(1)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(CheckpointError, match="lacks the metadata"):
        load_checkpoint(tmp_path / "b.safetensors")

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")

    (tmp_path / "c.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "c.safetensors")


def test_saving_refuses_incomplete_metadata(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(build_model("reference", "bn"), tmp_path / "x.safetensors", {"arch": "reference"})


def test_trials_are_written_with_folders_hidden(tmp_path: Path) -> None:
    from artifacts.trials import TrialsError, command_line, read_trials, trial_record, write_trials

    command = command_line("python -m training", ["--norm", "gn", "--data-dir", "/home/me/data",
                                                  "--output-dir=/tmp/out", "--lr", "0.2"])
    assert command == "python -m training --norm gn --data-dir PATH --output-dir=PATH --lr 0.2"
    path = tmp_path / "trials.json"
    assert read_trials(path) == []
    write_trials(path, [
        trial_record(command, "CPU (2 threads)", {"gn": {"norm": "gn", "lr": 0.2, "validation_accuracy": 0.84,
                                                         "mean": [0.5], "classes": ["cat"]}}),
        trial_record("python -m training --norm ln", "CPU (2 threads)", {"ln": {"norm": "ln"}}, note="a note")])
    trials = read_trials(path)
    assert [t["command"] for t in trials] == [command, "python -m training --norm ln"]
    assert trials[0]["models"]["gn"] == {"norm": "gn", "lr": 0.2, "validation_accuracy": 0.84}  # settings only
    assert trials[1]["note"] == "a note" and "note" not in trials[0]
    path.write_text("[1, 2]")
    with pytest.raises(TrialsError, match="not a trials file"):
        read_trials(path)


def test_the_shipped_trials_record_each_command_without_folders() -> None:
    from artifacts.trials import read_trials

    trials = read_trials(CheckpointFolder(CHECKPOINTS).trials)
    by_hand = [t for t in trials if "study" not in t]
    assert by_hand and all(t["command"].startswith("python -m training") for t in by_hand)
    for trial in by_hand:
        assert "/" not in trial["command"].replace("PATH", "") and trial["models"]
        for model in trial["models"].values():
            assert {"norm", "lr", "test_accuracy"} <= set(model)
    for trial in trials[len(by_hand):]:  # the search's trials: commands to repeat them, and never a test accuracy
        assert "study" in trial and all(c.startswith("python -m training ") and "/" not in c.replace("PATH", "")
                                        for c in trial["commands"].values())
        assert all("test_accuracy" not in model for model in trial["models"].values())


SHIPPED_WEIGHTS = sorted(CHECKPOINTS.rglob("*.safetensors"))


def test_the_shipped_folder_has_weights_to_rescore() -> None:
    assert {path.name for path in SHIPPED_WEIGHTS} >= {"bn.safetensors", "gn.safetensors", "ln.safetensors"}


@pytest.mark.parametrize("path", SHIPPED_WEIGHTS, ids=lambda path: str(path.relative_to(CHECKPOINTS)))
def test_each_shipped_model_scores_the_test_accuracy_recorded_in_it(path: Path, cifar_test) -> None:
    from training.evaluate import evaluate

    model, metadata = load_checkpoint(path)
    _, accuracy = evaluate(model, cifar_test, mean=tuple(metadata["mean"]), std=tuple(metadata["std"]))
    # The same 10,000 images; a float sum split over another number of threads may move one borderline image.
    assert abs(accuracy - metadata["test_accuracy"]) <= 1 / len(cifar_test), (accuracy, metadata["test_accuracy"])
