"""What the networks take: CIFAR-10's classes, and the one path from uint8 pixels to network input.

Training, evaluation, the lab and the app all standardize with ``standardize``, so a
network sees the same numbers for the same pixels wherever it runs.
"""

import numpy as np
import torch
from torch import Tensor

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASSES)
# Per-channel statistics of the 50,000 training images, on the 0-1 scale.
MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


def standardize(images: Tensor, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 (N, 3, H, W) -> standardized float: ``(x - 255 mean) / (255 std)``.

    The statistics are laid out like one image in the batch's own memory format, so
    the arithmetic runs over contiguous rows: broadcasting a (3,) vector along a
    channels_last batch is several times slower on a CPU.
    """
    layout = (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
              else torch.contiguous_format)

    def per_pixel(values: tuple[float, ...]) -> Tensor:
        column = torch.tensor(values, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
        return column.expand(1, 3, *images.shape[2:]).contiguous(memory_format=layout)

    return (images.to(dtype) - per_pixel(mean)) / per_pixel(std)


def pixels_to_input(pixels: np.ndarray, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> Tensor:
    """(H, W, 3) or (N, H, W, 3) uint8 pixels, as images are stored -> the network's (N, 3, H, W) input."""
    batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8))
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    return standardize(batch.permute(0, 3, 1, 2), mean, std)
