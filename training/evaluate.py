"""Inference over a whole split: loss, accuracy and per-image probabilities."""

import torch
from torch import Tensor, nn

from model import MEAN, STD, standardize
from training.data import Split, batches


@torch.no_grad()
def class_probabilities(model: nn.Module, images: Tensor, batch_size: int = 1000,
                        mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> Tensor:
    """Class probabilities (N, 10) for uint8 images (N, 3, 32, 32), in eval mode, standardized with ``mean``/``std``."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = standardize(images[start : start + batch_size].to(device), mean, std)
        outputs.append(model(chunk.contiguous(memory_format=torch.channels_last)).float().softmax(1))
    return torch.cat(outputs)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000,
             mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split`` (inputs standardized with ``mean``/``std``)."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for images, labels in batches(split, batch_size):
        logits = model(standardize(images.to(device), mean, std).contiguous(memory_format=torch.channels_last)).float()
        labels = labels.to(device)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return loss_sum / len(split), correct / len(split)
