import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artifacts.folder import CheckpointFolder
from model import NORMS
from training.data import Split, load_split

REPO = Path(__file__).resolve().parent.parent
# The checkpoint set the app tests run on: the shipped one, or the folder $CHECKPOINT_DIR names.
CHECKPOINTS = Path(os.environ.get("CHECKPOINT_DIR", REPO / "checkpoints"))


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The checkpoint set, with every file the app tests read; a missing one fails with the way to make it."""
    folder = CheckpointFolder(CHECKPOINTS)
    needed = [*(folder.weights(norm) for norm in NORMS), folder.mistakes, folder.example("cat"), folder.example("dog")]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `python -m training` or set CHECKPOINT_DIR to a checkpoint set")
    return CHECKPOINTS


@pytest.fixture(scope="session", autouse=True)
def gradio_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images the app writes during the tests go to a folder of the test session's own."""
    folder = tmp_path_factory.mktemp("gradio")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def read_png(path: str | Path) -> np.ndarray:
    """The pixels of an image file the app handed out."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        return np.array(image.convert("RGB"))


def cifar_root() -> Path | None:
    """A read-only CIFAR-10 copy: $CIFAR10_DATA_DIR, else ../shared/data beside the checkout."""
    candidates = [os.environ.get("CIFAR10_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "cifar-10-batches-py" / "test_batch").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    root = cifar_root()
    if root is None:
        pytest.skip("CIFAR-10 not found: set CIFAR10_DATA_DIR to a folder holding cifar-10-batches-py/")
    return root


@pytest.fixture(scope="session")
def cifar_train(cifar_dir: Path) -> Split:
    return load_split(cifar_dir, train=True)


@pytest.fixture(scope="session")
def cifar_test(cifar_dir: Path) -> Split:
    return load_split(cifar_dir, train=False)


@pytest.fixture
def synthetic_split() -> Split:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return Split(images, torch.randint(0, 10, (256,), generator=generator))
