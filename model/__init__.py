"""The network family, its normalization factory, and checkpoint loading."""

import hashlib

from torch import nn

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.network import CLASSES, MEAN, NUM_CLASSES, STD, ResidualNet, SeedNet
from model.norms import NORM_COLOURS, NORM_TITLES, NORMS, make_norm

ARCHS: dict[str, type[nn.Module]] = {"residual": ResidualNet, "seed": SeedNet}
DEFAULT_ARCH = "residual"


def build_model(arch: str, norm: str) -> nn.Module:
    """The network ``arch`` with normalization ``norm`` (see ``ARCHS`` and ``NORMS``)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return ARCHS[arch](norm)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def network_fingerprint(model: nn.Module) -> str:
    """A short digest of the network's layers in order, with their sizes.

    Saved results and training states carry it, so that they are not taken for another
    version of the network: moving a pool changes it even where no weight changes shape.
    """
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


__all__ = [
    "ARCHS", "CLASSES", "DEFAULT_ARCH", "MEAN", "NORMS", "NORM_COLOURS", "NORM_TITLES", "NUM_CLASSES", "STD",
    "CheckpointError", "build_model", "count_parameters", "load_checkpoint", "make_norm", "network_fingerprint",
    "save_checkpoint",
]
