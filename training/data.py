"""CIFAR-10 as uint8 tensors on the training device, augmented a whole batch at a time.

The images are read once through ``torchvision.datasets.CIFAR10`` and then never
leave the device: a training batch's random crops and flips are one gather of whole
pixels, all tensor ops, so there is no per-image PIL work and no worker process.
"""

import argparse
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

from model import MEAN, STD, standardize

DATA_DIR_ENV = "CIFAR10_DATA_DIR"
DEFAULT_DATA_DIR = "data"
DOWNLOAD_HINT = (
    "Download it with `python -m training --download` (about 170 MB), or fetch "
    "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
    "there, or point --data-dir (or the CIFAR10_DATA_DIR environment variable) at the "
    "folder that holds cifar-10-batches-py/."
)


class DataError(RuntimeError):
    """The dataset could not be found, downloaded or read; the message says what to do."""


@dataclass
class Split:
    images: Tensor  # uint8, (N, 3, 32, 32)
    labels: Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int) -> "Split":
        return Split(self.images[:count], self.labels[:count])

    def to(self, device: torch.device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The --data-dir and --download options every command that reads CIFAR-10 shares."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding cifar-10-batches-py/ "
                        f"(default: ${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR})")
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR-10 into --data-dir if it is not there yet")


def dataset_problems(root: Path) -> list[str]:
    """Describe every missing or damaged file of the python CIFAR-10 under ``root``."""
    folder = root / CIFAR10.base_folder
    problems = []
    for name, md5 in [*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], CIFAR10.meta["md5"])]:
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif not check_integrity(str(path), md5):
            problems.append(f"{path} is corrupt or incomplete (its MD5 checksum does not match)")
    return problems


def load_split(root: Path, train: bool, download: bool = False) -> Split:
    """Read one split of CIFAR-10 from ``root``, downloading it first if asked to."""
    root = Path(root)
    if download and dataset_problems(root):
        try:
            CIFAR10(root=str(root), train=train, download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise DataError(
                f"Could not download CIFAR-10 into {root.resolve()}: {error}. " + DOWNLOAD_HINT
            ) from error
    problems = dataset_problems(root)
    if problems:
        raise DataError(
            f"CIFAR-10 not found or incomplete in {root.resolve()}:\n  "
            + "\n  ".join(problems)
            + "\n"
            + DOWNLOAD_HINT
        )
    dataset = CIFAR10(root=str(root), train=train, download=False)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(dataset.targets, dtype=torch.long))


def reflect_pad(images: Tensor, padding: int) -> Tensor:
    """Pad uint8 images by reflection once, so each epoch's crops are plain gathers.

    The result is channels_last, so each pixel's three bytes sit together and a crop
    gathers whole pixels (see ``random_crop_flip``).
    """
    padded = torch.nn.functional.pad(images.float(), [padding] * 4, mode="reflect").to(images.dtype)
    return padded.contiguous(memory_format=torch.channels_last)


def random_crop_flip(
    padded: Tensor, size: int, generator: torch.Generator, index: Tensor | None = None, flip: bool = True,
    flipped: Tensor | None = None,
) -> Tensor:
    """Take a random ``size`` x ``size`` crop of each padded image and flip half of them.

    ``index`` picks the images (all of them when None). One gather of pixels for the
    whole batch: each image gets its own offset, drawn from ``generator`` (on the CPU,
    so runs are reproducible on any device). The crops come out channels_last.
    ``flipped`` (one bool per picked image) says which to flip instead of drawing it.
    """
    images, channels, padded_size, _ = padded.shape
    device = padded.device
    index = torch.arange(images, device=device) if index is None else index.to(device)
    n = len(index)
    dy, dx = torch.randint(0, padded_size - size + 1, (2, n, 1), generator=generator).to(device)
    rows = dy + torch.arange(size, device=device)
    cols = torch.arange(size, device=device).expand(n, size)
    if flipped is not None:
        cols = torch.where(flipped.view(n, 1).to(device), size - 1 - cols, cols)
    elif flip:
        flipped = (torch.rand(n, 1, generator=generator) < 0.5).to(device)
        cols = torch.where(flipped, size - 1 - cols, cols)
    cols = cols + dx
    pixel = (index[:, None, None] * padded_size + rows[:, :, None]) * padded_size + cols[:, None, :]
    # (images * H * W, C): a view when ``padded`` is channels_last, as reflect_pad makes it
    # (any other layout works, at the cost of copying all the images on every call).
    pixels = padded.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1, channels)
    crops = pixels.index_select(0, pixel.flatten()).view(n, size, size, channels)
    return crops.permute(0, 3, 1, 2)


def random_resized_crop(
    padded: Tensor, size: int, generator: torch.Generator, index: Tensor, scale: float, ratio: float,
    flip: bool = True, flipped: Tensor | None = None,
) -> Tensor:
    """A random crop of each picked padded image, of random area and aspect, resized to ``size`` x ``size``.

    The crop's area is a share of ``size`` x ``size`` drawn uniformly from [``scale``, 1], its
    aspect ratio log-uniformly from [1/``ratio``, ``ratio``], its place uniformly within the
    padded image. Resizing is bilinear, as four gathers of whole pixels for the whole batch
    blended in float: no per-image work. Flips as in ``random_crop_flip``. Returns float
    pixels on the 0-255 scale, channels_last.
    """
    images, channels, padded_size, _ = padded.shape
    device = padded.device
    n = len(index)
    area = size * size * (scale + (1 - scale) * torch.rand(n, generator=generator))
    aspect = torch.exp(math.log(ratio) * (2 * torch.rand(n, generator=generator) - 1))
    width = torch.sqrt(area * aspect).clamp(max=padded_size)
    height = torch.sqrt(area / aspect).clamp(max=padded_size)
    left = (padded_size - width) * torch.rand(n, generator=generator)
    top = (padded_size - height) * torch.rand(n, generator=generator)
    if flipped is None:
        flipped = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    steps = (torch.arange(size) + 0.5) / size
    # Source coordinates of each output pixel's centre, in pixels of the padded image.
    xs = (left[:, None] + steps * width[:, None] - 0.5).clamp(0, padded_size - 1)
    ys = (top[:, None] + steps * height[:, None] - 0.5).clamp(0, padded_size - 1)
    xs = torch.where(flipped.view(n, 1).cpu(), xs.flip(1), xs)
    x0, y0 = xs.floor().long(), ys.floor().long()
    x1, y1 = (x0 + 1).clamp(max=padded_size - 1), (y0 + 1).clamp(max=padded_size - 1)
    wx, wy = (xs - x0).to(device)[:, None, :, None], (ys - y0).to(device)[:, :, None, None]
    pixels = padded.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1, channels)
    base = index.to(device)[:, None, None] * padded_size

    def gather(y: Tensor, x: Tensor) -> Tensor:
        pixel = (base + y.to(device)[:, :, None]) * padded_size + x.to(device)[:, None, :]
        return pixels.index_select(0, pixel.flatten()).view(n, size, size, channels).float()

    top_row = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom_row = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    return (top_row * (1 - wy) + bottom_row * wy).permute(0, 3, 1, 2)


# ITU-R 601 luma weights: how bright each channel looks, for contrast and saturation.
LUMA = (0.299, 0.587, 0.114)


def color_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Scale each image's brightness, contrast and saturation by factors drawn from [1-strength, 1+strength].

    ``images``: (N, 3, H, W) pixels on the 0-255 scale, any dtype; the result is float, clamped to 0-255,
    in the same memory format. Contrast blends with the image's mean grey, saturation with each
    pixel's grey, as torchvision's ColorJitter does, but for the whole batch at once.
    """
    n = len(images)
    factors = (1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=generator) - 1)).to(images.device)
    brightness, contrast, saturation = factors
    luma = torch.tensor(LUMA, device=images.device).view(1, 3, 1, 1)
    result = images.float() * brightness
    grey = (result * luma).sum(1, keepdim=True)
    result = (result - grey.mean((2, 3), keepdim=True)) * contrast + grey.mean((2, 3), keepdim=True)
    grey = (result * luma).sum(1, keepdim=True)
    return ((result - grey) * saturation + grey).clamp(0, 255)


@dataclass(frozen=True)
class Augmentation:
    """How a training batch is augmented beyond the shifted crops (``TrainConfig``'s levers; all off by default)."""

    flips: str = "random"  # "random", "alternate" or "none"
    crop_scale: float = 1.0  # below 1, or crop_ratio above 1: random resized crops
    crop_ratio: float = 1.0
    color_jitter: float = 0.0

    @property
    def resized(self) -> bool:
        return self.crop_scale < 1 or self.crop_ratio > 1


def alternating_flips(count: int, seed: int) -> Tensor:
    """Which images start flipped when flips alternate: half of them, drawn once per run from ``seed``."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)) < count // 2


def augmented_batches(
    padded: Tensor, labels: Tensor, batch_size: int, generator: torch.Generator, size: int = 32, flip: bool = True,
    mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD, augmentation: Augmentation | None = None,
    epoch: int = 0, starts_flipped: Tensor | None = None,
):
    """One epoch of training batches: shuffled, randomly cropped (and flipped, unless ``flip`` is off), standardized
    with ``mean`` and ``std``.

    ``padded`` holds the reflect-padded uint8 images (see ``reflect_pad``); the batches
    come out as float, channels_last tensors, ready for the network. ``augmentation``, when
    given, overrides ``flip`` and adds the levers it sets: with alternating flips, image i is
    flipped in epoch ``epoch`` (counted from 0) when ``starts_flipped[i]`` differs from the
    epoch's parity, so each image is seen both ways in every two epochs.
    """
    augmentation = augmentation or Augmentation(flips="random" if flip else "none")
    if augmentation.flips == "alternate" and starts_flipped is None:
        raise ValueError("alternating flips need starts_flipped (see alternating_flips)")
    indices = Split(torch.arange(len(labels), device=labels.device), labels)
    for index, batch_labels in batches(indices, batch_size, generator):
        if len(index) == 1:  # a last batch of one image gives BatchNorm no batch statistics
            break
        flipped = (starts_flipped.to(index.device)[index] ^ bool(epoch % 2)
                   if augmentation.flips == "alternate" else None)
        random_flip = augmentation.flips == "random"
        if augmentation.resized:
            crops = random_resized_crop(padded, size, generator, index, augmentation.crop_scale,
                                        augmentation.crop_ratio, random_flip, flipped)
        else:
            crops = random_crop_flip(padded, size, generator, index, random_flip, flipped)
        if augmentation.color_jitter:
            crops = color_jitter(crops, augmentation.color_jitter, generator)
        yield standardize(crops, mean, std), batch_labels


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None):
    """Yield (images, labels) batches; shuffled when a generator is given."""
    count = len(split)
    if generator is None:
        order = torch.arange(count)
    else:
        order = torch.randperm(count, generator=generator)
    order = order.to(split.labels.device)
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        yield split.images[index], split.labels[index]


VALIDATION_PER_CLASS = 500
VALIDATION_SEED = 20_260_101  # fixed for good: every run holds out the same images


def validation_indices(labels: Tensor, per_class: int = VALIDATION_PER_CLASS) -> Tensor:
    """The fixed validation split: ``per_class`` training images of each class, sorted positions.

    Drawn once from a generator with a fixed seed, so every run on every machine holds out
    the same 5,000 of CIFAR-10's 50,000 training images.
    """
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    labels = labels.cpu()
    chosen = []
    for label in labels.unique(sorted=True):
        members = torch.nonzero(labels == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def split_id(indices: Tensor) -> str:
    """A short digest naming a split, recorded wherever a result depends on it."""
    return hashlib.sha256(indices.cpu().to(torch.int64).numpy().tobytes()).hexdigest()[:12]


def held_out_complement(count: int, held_out: Tensor) -> Tensor:
    """The sorted positions among ``count`` images that ``held_out`` does not hold: the ones trained on."""
    keep = torch.ones(count, dtype=torch.bool)
    keep[held_out] = False
    return torch.nonzero(keep).flatten()


def hold_out_validation(train: Split, per_class: int = VALIDATION_PER_CLASS) -> tuple[Split, Split, str]:
    """(the other training images, the validation images, the split's id): 45,000 and 5,000 on CIFAR-10."""
    held_out = validation_indices(train.labels, per_class)
    rest = held_out_complement(len(train), held_out)
    return (Split(train.images[rest], train.labels[rest]), Split(train.images[held_out], train.labels[held_out]),
            split_id(held_out))
