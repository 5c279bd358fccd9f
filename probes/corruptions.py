"""Image corruptions at five severities, for uint8 CIFAR-sized images.

The lab measures each model's accuracy under them and the app applies them to an
uploaded photo. Severities 1-5 follow CIFAR-10-C (Hendrycks & Dietterich, 2019)
where it has the corruption; severity 0 returns the images unchanged.

``scaling`` is the odd one out on purpose: it shrinks every pixel towards the
training-set mean, which multiplies the network's normalized input by one factor.
The first conv has no bias, so a norm that standardizes each sample on its own
(GN, LN) cancels that factor, and BN with fixed statistics cannot.
"""

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as tvf

from model import MEAN

SEVERITIES = (1, 2, 3, 4, 5)


def _as_float(images: Tensor) -> Tensor:
    return images.float() / 255


def _as_uint8(images: Tensor) -> Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    return _as_uint8(_as_float(images) + sigma * noise)


def blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return tvf.gaussian_blur(images, kernel_size=[7, 7], sigma=[sigma, sigma])


def brightness(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    shift = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    return _as_uint8(_as_float(images) + shift)


def contrast(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    pixels = _as_float(images)
    mean = pixels.mean(dim=(-3, -2, -1), keepdim=True)  # each image's own mean grey
    return _as_uint8(mean + factor * (pixels - mean))


def jpeg(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    out = []
    for image in images.cpu().permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(images.device)


def scaling(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    factor = (0.6, 0.4, 0.25, 0.15, 0.08)[severity - 1]
    mean = torch.tensor(MEAN, device=images.device).view(3, 1, 1)
    return _as_uint8(mean + factor * (_as_float(images) - mean))


Corruption = Callable[[Tensor, int, "torch.Generator | None"], Tensor]
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg,
    "scaling": scaling,
}
CORRUPTION_TITLES: dict[str, str] = {
    "gaussian_noise": "Gaussian noise",
    "blur": "Gaussian blur",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "jpeg": "JPEG compression",
    "scaling": "Global scaling to the mean",
}


def corrupt(images: Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """``images`` (N, 3, H, W) uint8 with corruption ``name`` at ``severity`` 0-5, as uint8."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0-5, got {severity!r}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images shaped (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if severity == 0:
        return images.clone()
    return CORRUPTIONS[name](images, severity, generator)
