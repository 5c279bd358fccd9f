"""The training settings: one table, which checks itself and from which the command line is derived.

A field with ``help`` in its metadata is a command-line option (``--batch-size`` for
``batch_size``); its bounds are checked in ``TrainConfig.__post_init__``, so a config
made in code (the lab's batch-size sweep, the tests) is held to the same rules as one
made from the command line. ``None`` for ``lr`` and ``crop_padding`` means the
architecture's own default (``model.ARCHITECTURES``).
"""

import argparse
import dataclasses
import math
import types
from dataclasses import asdict, dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

from model import ARCHITECTURES, DEFAULT_ARCH, NORMS


class ConfigError(ValueError):
    """A setting is out of range; the message names the command-line option."""


def option(help: str, **argparse_options: Any) -> dict[str, Any]:
    return {"help": help, "argparse": argparse_options}


@dataclass(frozen=True)
class TrainConfig:
    arch: str = field(default=DEFAULT_ARCH, metadata=option(
        "network: " + "; ".join(f"'{a.name}' ({a.description})" for a in ARCHITECTURES.values())
        + f" (default {DEFAULT_ARCH})", choices=list(ARCHITECTURES)))
    norm: str = "bn"
    epochs: int = field(default=20, metadata=option("default 20 (at most 20)"))
    batch_size: int = field(default=256, metadata=option("default 256"))
    lr: float | None = field(default=None, metadata=option(
        "peak one-cycle learning rate (default: "
        + "; ".join(f"{a.name} " + ", ".join(f"{lr} for {n}" for n, lr in a.lr.items()) for a in ARCHITECTURES.values())
        + ")"))
    momentum: float = 0.9
    weight_decay: float = field(default=5e-4, metadata=option("on conv and linear weights only, default 0.0005"))
    label_smoothing: float = field(default=0.1, metadata=option("default 0.1"))
    warmup_fraction: float = 0.25
    crop_padding: int | None = field(default=None, metadata=option(
        "pixels of reflect padding before the random 32x32 crop (default: "
        + ", ".join(f"{a.crop_padding} for {a.name}" for a in ARCHITECTURES.values()) + ")"))
    seed: int = field(default=0, metadata=option("random seed, default 0"))
    train_subset: int | None = field(default=None, metadata=option(
        "train on the first N training images only (quick trials)"))

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        architecture = ARCHITECTURES[self.arch]
        if self.lr is None:
            object.__setattr__(self, "lr", architecture.lr[self.norm])
        if self.crop_padding is None:
            object.__setattr__(self, "crop_padding", architecture.crop_padding)
        checks = [
            (1 <= self.epochs <= 20, f"--epochs must be between 1 and 20 (got {self.epochs})"),
            (self.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two samples)"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be a positive number (got {self.lr})"),
            (0 <= self.crop_padding <= 16, f"--crop-padding must be between 0 and 16 (got {self.crop_padding})"),
            (self.weight_decay >= 0, f"--weight-decay must not be negative (got {self.weight_decay})"),
            (0 <= self.label_smoothing < 1,
             f"--label-smoothing must be at least 0 and below 1 (got {self.label_smoothing})"),
            (self.train_subset is None or self.train_subset >= self.batch_size,
             "--train-subset must be at least --batch-size"),
        ]
        for holds, message in checks:
            if not holds:
                raise ConfigError(message)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value_type(annotation: Any) -> type:
    """``int`` for ``int`` and for ``int | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option for every field of ``TrainConfig`` that has help text."""
    hints = get_type_hints(TrainConfig)
    for spec in dataclasses.fields(TrainConfig):
        if "help" not in spec.metadata:
            continue
        parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=_value_type(hints[spec.name]),
                            default=spec.default, help=spec.metadata["help"], **spec.metadata["argparse"])


def config_from_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser, **fixed: Any) -> TrainConfig:
    """The config the options in ``args`` describe (with ``fixed`` fields set); a bad value ends in ``parser.error``."""
    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)
              if "help" in spec.metadata}
    try:
        return TrainConfig(**{**values, **fixed})
    except ConfigError as error:
        parser.error(str(error))
