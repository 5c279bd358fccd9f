"""Grad-CAM: which parts of the image raised a model's score for a class.

For a chosen block of ``model.features`` with activations A (C, h, w), the gradient of
the class score with respect to A, averaged over h and w, weighs each channel; the
positive part of the weighted sum of A's channels is the heat map (Selvaraju et al., 2017).

The network is run in two halves around the chosen block instead of with hooks, so
concurrent requests never register anything on the shared model.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from webapp.preprocess import enlarge


@dataclass(frozen=True)
class Layer:
    index: int  # position in model.features
    label: str  # e.g. "block 4 · residual · 32 ch at 8×8"
    channels: int
    height: int
    width: int


def _kind(block: nn.Module) -> str:
    if hasattr(block, "body") and type(block).__name__ == "Residual":
        return "residual"
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    pooled = any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in block.modules())
    if not convs:
        return type(block).__name__
    size = "×".join(str(k) for k in convs[0].kernel_size)
    return f"{size} conv" + (" + pool" if pooled else "")


def feature_layers(network: nn.Module) -> list[Layer]:
    """The blocks of ``network.features`` with their output shapes, from one dry run on a blank image."""
    layers = []
    with torch.inference_mode():
        x = torch.zeros(1, 3, 32, 32)
        for index, block in enumerate(network.features):
            x = block(x)
            _, channels, height, width = x.shape
            label = f"block {index + 1} · {_kind(block)} · {channels} ch at {height}×{width}"
            layers.append(Layer(index, label, channels, height, width))
    return layers


def grad_cam(network: nn.Module, x: torch.Tensor, layer: int, target: int | None = None) -> tuple[np.ndarray, int]:
    """Heat map (input height x width, values 0-1) for class ``target`` (default: the top class), and that class.

    ``x`` is one normalized image, (1, 3, H, W). Must not be called under ``torch.inference_mode``.
    """
    features = network.features
    if not 0 <= layer < len(features):
        raise ValueError(f"layer must be between 0 and {len(features) - 1}, got {layer}")
    with torch.no_grad():
        activations = features[: layer + 1](x)
    activations = activations.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = network.head(features[layer + 1 :](activations))
        target = int(logits.argmax(dim=1)[0]) if target is None else target
        (gradient,) = torch.autograd.grad(logits[0, target], activations)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activations.detach()).sum(dim=1, keepdim=True))
    cam = functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return cam.numpy(), target


@cache
def _colour_table() -> np.ndarray:
    """The classic "jet" heat-map colours (blue, cyan, yellow, red) as a (256, 3) table, without matplotlib."""
    x = np.linspace(0, 1, 256)[:, None]
    return (np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0])), 0, 1) * 255).astype(np.float32)


# 128 pixels for a 32x32 image: the page draws them larger, with hard pixel edges, and each answer
# stays small to encode and to send (224 pixels cost three times the bytes and the encoding time).
OVERLAY_FACTOR = 4


def overlay(pixels: np.ndarray, cam: np.ndarray, opacity: float, factor: int = OVERLAY_FACTOR) -> np.ndarray:
    """The image enlarged ``factor`` times with the heat map blended over it at ``opacity`` (0-1)."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    base = enlarge(pixels, factor).astype(np.float32)
    heat = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    heat = functional.interpolate(heat, size=base.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    colours = _colour_table()[np.clip((heat.numpy() * 255).round(), 0, 255).astype(np.uint8)]
    return np.clip((1 - opacity) * base + opacity * colours, 0, 255).astype(np.uint8)
