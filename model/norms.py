"""The one place where a normalization name becomes a layer.

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

from torch import nn

NORMS: tuple[str, ...] = ("bn", "gn", "ln")
NORM_TITLES: dict[str, str] = {"bn": "BatchNorm", "gn": "GroupNorm", "ln": "LayerNorm"}
# Colour-blind-safe (Okabe-Ito), so a model is one colour in every plot and panel.
NORM_COLOURS: dict[str, str] = {"bn": "#0072B2", "gn": "#E69F00", "ln": "#009E73"}


def make_norm(norm: str, channels: int, groups: int) -> nn.Module:
    """Return the normalization layer called ``norm`` for ``channels`` feature maps.

    ``groups`` is only used by ``gn``; it must divide ``channels``.
    """
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        if channels % groups:
            raise ValueError(f"GroupNorm needs groups ({groups}) to divide channels ({channels})")
        return nn.GroupNorm(groups, channels)
    if norm == "ln":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
