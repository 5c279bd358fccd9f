"""Batch coupling: an image's prediction as a function of the other images in its batch.

In training mode BatchNorm normalizes with the statistics of the current batch, so
what the network says about one image depends on its companions; GroupNorm and
LayerNorm normalize each image on its own, and in eval mode BN uses fixed running
statistics, so neither depends on the batch. The lab measures this and the app shows
it, both with ``companion_sweep``; the app's look inside the norms runs the same
batches (``companion_batches``).
"""

import copy

import torch
from torch import Tensor, nn

from model import standardize


def train_mode_copy(model: nn.Module) -> nn.Module:
    """A copy in training mode, so the original's running statistics are never touched."""
    return copy.deepcopy(model).train()


def batch_with_companions(image: Tensor, companions: Tensor) -> Tensor:
    """The network input for ``image`` (3, H, W) in one batch with ``companions`` (K, 3, H, W), image first.

    Both are uint8 pixels; the result is the standardized (K + 1, 3, H, W) batch.
    """
    return standardize(torch.cat([image[None], companions])).contiguous(memory_format=torch.channels_last)


def draw_companions(pool: Tensor, batches: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """``batches`` random sets of ``batch_size - 1`` companions from ``pool`` (N, 3, H, W), each without replacement."""
    return [pool[torch.randperm(len(pool), generator=generator)[: batch_size - 1]] for _ in range(batches)]


def companion_batches(image: Tensor, pool: Tensor, batches: int, batch_size: int,
                      generator: torch.Generator) -> list[Tensor]:
    """The standardized batches ``companion_sweep`` puts ``image`` in: itself first, then random companions."""
    return [batch_with_companions(image, companions)
            for companions in draw_companions(pool, batches, batch_size, generator)]


@torch.no_grad()
def probabilities_with_companions(model: nn.Module, image: Tensor, companions: Tensor) -> Tensor:
    """Class probabilities (10,) for ``image`` (3, H, W) in one batch with ``companions`` (K, 3, H, W).

    Both are uint8 pixels. The image goes first in the batch; the batch statistics a BN
    model in training mode uses come from all K + 1 images.
    """
    return model(batch_with_companions(image, companions))[0].float().softmax(0)


@torch.no_grad()
def companion_sweep(model: nn.Module, image: Tensor, pool: Tensor, batches: int, batch_size: int,
                    generator: torch.Generator) -> Tensor:
    """Probabilities (batches, 10) for ``image`` in ``batches`` batches of random companions from ``pool``.

    ``image`` (3, H, W) and ``pool`` (N, 3, H, W) are uint8; each batch's ``batch_size - 1``
    companions are drawn from ``pool`` without replacement.
    """
    inputs = companion_batches(image, pool, batches, batch_size, generator)
    return torch.stack([model(batch)[0].float().softmax(0) for batch in inputs])
