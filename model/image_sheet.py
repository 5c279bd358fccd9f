"""Many 32x32 images stored as one lossless WebP sheet.

The mistakes file holds a few thousand test images. As raw bytes (even zlib-compressed)
they take about 3 KB each; tiled into one sheet, lossless WebP stores them in about
60% of that, pixel for pixel.
"""

import io

import numpy as np
from PIL import Image

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
