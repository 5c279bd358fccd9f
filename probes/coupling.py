"""Batch coupling: an image's prediction as a function of the other images in its batch.

In training mode BatchNorm normalizes with the statistics of the current batch, so
what the network says about one image depends on its companions; GroupNorm and
LayerNorm normalize each image on its own, and in eval mode BN uses fixed running
statistics, so neither depends on the batch. The lab measures this and the app shows
it, both with ``companion_sweep``.
"""

import copy

import torch
from torch import Tensor, nn

from model import standardize


def train_mode_copy(model: nn.Module) -> nn.Module:
    """A copy in training mode, so the original's running statistics are never touched."""
    return copy.deepcopy(model).train()


@torch.no_grad()
def probabilities_with_companions(model: nn.Module, image: Tensor, companions: Tensor) -> Tensor:
    """Class probabilities (10,) for ``image`` (3, H, W) in one batch with ``companions`` (K, 3, H, W).

    Both are uint8 pixels. The image goes first in the batch; the batch statistics a BN
    model in training mode uses come from all K + 1 images.
    """
    batch = standardize(torch.cat([image[None], companions])).contiguous(memory_format=torch.channels_last)
    return model(batch)[0].float().softmax(0)


@torch.no_grad()
def companion_sweep(model: nn.Module, image: Tensor, pool: Tensor, batches: int, batch_size: int,
                    generator: torch.Generator) -> Tensor:
    """Probabilities (batches, 10) for ``image`` in ``batches`` batches of random companions from ``pool``.

    ``image`` (3, H, W) and ``pool`` (N, 3, H, W) are uint8; each batch's ``batch_size - 1``
    companions are drawn from ``pool`` without replacement.
    """
    rows = []
    for _ in range(batches):
        chosen = torch.randperm(len(pool), generator=generator)[: batch_size - 1]
        rows.append(probabilities_with_companions(model, image, pool[chosen]))
    return torch.stack(rows)
