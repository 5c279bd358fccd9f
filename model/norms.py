"""The normalization registry: one record per norm, the one place a norm's name becomes a layer.

All three normalizations compute ``(x - mean) / sqrt(var + eps) * gamma + beta``;
they differ only in which elements share a mean and a variance:

* ``bn`` -- BatchNorm2d: per channel, over the batch and both spatial axes (N, H, W).
  Uses batch statistics in training and running averages at inference.
* ``gn`` -- GroupNorm: per sample, over (channels of one group, H, W).
* ``ln`` -- layer norm over (C, H, W) per sample, which is exactly ``GroupNorm(1, C)``:
  one group holding every channel. (``nn.LayerNorm`` would need channels-last
  reshapes and learns a per-pixel affine; GroupNorm(1, C) learns a per-channel one,
  as the other two do.)
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


class GroupCountError(ValueError):
    """A group count that does not divide a layer's channels: a network's builder says which setting to change."""


def _group_norm(channels: int, groups: int) -> nn.Module:
    if channels % groups:
        raise GroupCountError(f"GroupNorm needs groups ({groups}) to divide channels ({channels})")
    return nn.GroupNorm(groups, channels)


@dataclass(frozen=True)
class Norm:
    name: str  # what the CLI, file names and metadata call it
    title: str  # what people read
    short: str  # two letters, for tight labels
    colour: str  # the same in every plot and panel
    layer: Callable[[int, int], nn.Module]  # (channels, groups) -> the layer; only GroupNorm uses groups


# Colours are colour-blind-safe (Okabe-Ito).
NORMS: dict[str, Norm] = {
    norm.name: norm
    for norm in (
        Norm("bn", "BatchNorm", "BN", "#0072B2", lambda channels, groups: nn.BatchNorm2d(channels)),
        Norm("gn", "GroupNorm", "GN", "#E69F00", _group_norm),
        Norm("ln", "LayerNorm", "LN", "#009E73", lambda channels, groups: nn.GroupNorm(1, channels)),
    )
}


def norm_title(name: str) -> str:
    """The readable name of a norm; an unknown name (say, from a foreign file) as it is."""
    return NORMS[name].title if name in NORMS else name


def norm_short(name: str) -> str:
    return NORMS[name].short if name in NORMS else name


def norm_colour(name: str) -> str:
    """A norm's colour; grey for an unknown name."""
    return NORMS[name].colour if name in NORMS else "#888888"


def make_norm(norm: str, channels: int, groups: int) -> nn.Module:
    """The normalization layer called ``norm`` for ``channels`` feature maps.

    ``groups`` is only used by ``gn``; it must divide ``channels``.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return NORMS[norm].layer(channels, groups)
