"""``mistakes.npz``: every test image some model gets wrong, with each model's probabilities.

The writer (``write_mistakes``, called by the training export) and the reader
(``load_mistakes``, the app's Mistakes tab and Lab demos) side by side. The images are
kept pixel for pixel as one lossless WebP sheet (``encode_sheet``): as raw bytes, even
zlib-compressed, they take about 3 KB each; tiled into one sheet, lossless WebP stores
them in about 60% of that.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artifacts.atomic import atomic_write
from model import norm_title

TILE = 32
COLUMNS = 64  # 2,048 pixels wide
MAX_ROWS = 16383 // TILE  # WebP allows 16,383 pixels a side: up to 32,704 images


def encode_sheet(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images -> the bytes of one lossless WebP, as a uint8 array."""
    count = len(images)
    if count == 0 or images.shape[1:] != (TILE, TILE, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected a non-empty (N, {TILE}, {TILE}, 3) uint8 array, got {images.shape} {images.dtype}")
    rows = -(-count // COLUMNS)
    if rows > MAX_ROWS:
        raise ValueError(f"one sheet holds at most {MAX_ROWS * COLUMNS:,} images, not {count:,}")
    sheet = np.zeros((rows * COLUMNS, TILE, TILE, 3), dtype=np.uint8)
    sheet[:count] = images
    sheet = sheet.reshape(rows, COLUMNS, TILE, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * TILE, COLUMNS * TILE, 3)
    buffer = io.BytesIO()
    # For lossless WebP, quality and method set the encoder's effort: the highest
    # settings save 2% of the size for 70 times the time (about a minute here).
    Image.fromarray(sheet).save(buffer, format="WEBP", lossless=True, quality=0, method=4)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def decode_sheet(encoded: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` images of a sheet made by ``encode_sheet``, as (count, 32, 32, 3) uint8."""
    with Image.open(io.BytesIO(np.asarray(encoded, dtype=np.uint8).tobytes())) as image:
        sheet = np.asarray(image.convert("RGB"))
    height, width, _ = sheet.shape
    if height % TILE or width % TILE or (height // TILE) * (width // TILE) < count:
        raise ValueError(f"an image sheet of {width}x{height} pixels cannot hold {count} images of {TILE}x{TILE}")
    rows, columns = height // TILE, width // TILE
    tiles = sheet.reshape(rows, TILE, columns, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(-1, TILE, TILE, 3)
    return np.ascontiguousarray(tiles[:count])


def write_mistakes(path: Path, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                   test_index: np.ndarray, norms: list[str], classes: tuple[str, ...]) -> None:
    """Write the mistakes file: images (M, 32, 32, 3) uint8, labels (M,), probabilities (M, K, 10)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                image_sheet=encode_sheet(images),
                labels=np.asarray(labels).astype(np.uint8),
                probabilities=np.asarray(probabilities).astype(np.float16),
                test_index=np.asarray(test_index).astype(np.int16),
                norms=np.array(list(norms)),
                classes=np.array(list(classes)),
            )

    atomic_write(path, write)


class MistakesError(RuntimeError):
    """mistakes.npz is missing or unreadable; the message says how to regenerate it."""


@dataclass
class MistakeSet:
    images: np.ndarray  # (M, 32, 32, 3) uint8
    labels: np.ndarray  # (M,) int
    probabilities: np.ndarray  # (M, K, 10) float32, models in the order of ``norms``
    test_index: np.ndarray  # (M,) position in the CIFAR-10 test set
    norms: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        self.predicted = self.probabilities.argmax(axis=2)  # (M, K)
        self.correct = self.predicted == self.labels[:, None]  # (M, K)

    def __len__(self) -> int:
        return len(self.labels)

    def column(self, norm: str) -> int:
        if norm not in self.norms:
            raise ValueError(f"no {norm_title(norm)} predictions in the mistakes file")
        return self.norms.index(norm)


def load_mistakes(path: Path | str) -> MistakeSet:
    path = Path(path)
    hint = "Regenerate it with `python -m training` (it is written after the three models are trained)."
    if not path.is_file():
        raise MistakesError(f"{path} does not exist. {hint}")
    try:
        with np.load(path, allow_pickle=False) as data:
            mistakes = MistakeSet(
                images=decode_sheet(data["image_sheet"], len(data["labels"])),
                labels=np.asarray(data["labels"], dtype=np.int64),
                probabilities=np.asarray(data["probabilities"], dtype=np.float32),
                test_index=np.asarray(data["test_index"], dtype=np.int64),
                norms=tuple(str(n) for n in data["norms"]),
                classes=tuple(str(c) for c in data["classes"]),
            )
    except (OSError, KeyError, ValueError) as error:
        raise MistakesError(f"{path} is not a readable mistakes file ({error}). {hint}") from error
    count, models = len(mistakes.labels), len(mistakes.norms)
    if mistakes.images.shape[1:] != (32, 32, 3) or len(mistakes.images) != count or (
        mistakes.probabilities.shape != (count, models, len(mistakes.classes))
    ):
        raise MistakesError(f"{path} has inconsistent array shapes. {hint}")
    return mistakes
