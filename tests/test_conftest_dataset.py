"""The real-image tests cannot pass by skipping where the dataset is required."""

from pathlib import Path

import pytest

from tests import conftest


def test_a_named_folder_is_used_and_no_other(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIFAR10_DATA_DIR", str(tmp_path / "nowhere"))
    assert conftest.cifar_root() == tmp_path / "nowhere"


@pytest.mark.parametrize("variable", ["CI", "CIFAR10_DATA_DIR"])
def test_a_missing_dataset_fails_when_it_is_required(variable: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("CIFAR10_DATA_DIR", str(tmp_path / "nowhere"))
    if variable == "CI":
        monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CIFAR-10 not usable in .*nowhere.*data_batch_1 is missing"):
        conftest.cifar_dir.__wrapped__()


def test_an_invalid_dataset_fails_rather_than_falling_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"not the test batch")
    monkeypatch.setenv("CIFAR10_DATA_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="test_batch is corrupt or incomplete"):
        conftest.cifar_dir.__wrapped__()


def test_without_a_named_folder_outside_ci_a_missing_dataset_skips(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CIFAR10_DATA_DIR", raising=False)
    monkeypatch.setattr(conftest, "REPO", tmp_path)
    with pytest.raises(pytest.skip.Exception, match="not usable"):
        conftest.cifar_dir.__wrapped__()
