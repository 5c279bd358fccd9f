import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artifacts.folder import CheckpointFolder
from model import NORMS
from training.data import DATA_DIR_ENV, DEFAULT_DATA_DIR, Split, dataset_problems, load_split
from webapp.gradcam import OVERLAY_FACTOR

DATA_URL = "data:image/png;base64,"  # how a small image travels inside an answer (webapp.output_files)
CAM_SHAPE = (32 * OVERLAY_FACTOR, 32 * OVERLAY_FACTOR, 3)  # a Grad-CAM overlay of a 32x32 image, as the app sends it

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
    """The pixels of an image the app handed out: a file, or HTML holding it as a PNG ``data:`` URL."""
    source = path
    if isinstance(path, str) and DATA_URL in path:
        encoded = re.search(DATA_URL + r'([A-Za-z0-9+/=]+)', path)
        assert encoded, path[:200]
        source = io.BytesIO(base64.b64decode(encoded.group(1), validate=True))
    with Image.open(source) as image:
        assert image.format == "PNG", str(path)[:200]
        image.load()  # decodes every row: a truncated image raises
        return np.array(image.convert("RGB"))


def dataset_required() -> bool:
    """In CI, or where a dataset folder is named, the real-image tests must run: a missing dataset fails them."""
    return bool(os.environ.get("CI") or os.environ.get(DATA_DIR_ENV))


def cifar_root() -> Path:
    """The CIFAR-10 copy the tests read: the folder $CIFAR10_DATA_DIR names (and no other), else ./data."""
    named = os.environ.get(DATA_DIR_ENV)
    return Path(named) if named else REPO / DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    root = cifar_root()
    problems = dataset_problems(root)
    if problems:
        message = (f"CIFAR-10 not usable in {root}: {'; '.join(problems)}. "
                   f"Set {DATA_DIR_ENV} to a folder holding cifar-10-batches-py/")
        if dataset_required():
            pytest.fail(message + f" (required because {'CI' if os.environ.get('CI') else DATA_DIR_ENV} is set)")
        pytest.skip(message)
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
