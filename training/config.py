"""The training settings: one table, which checks itself and from which the command line is derived.

A field with ``help`` in its metadata is a command-line option (``--batch-size`` for
``batch_size``); its bounds are checked in ``TrainConfig.__post_init__``, so a config
made in code (the lab's batch-size sweep, the tests) is held to the same rules as one
made from the command line. A setting left at ``None`` takes the recipe's default
(``RECIPES``), and the recipe ours leaves ``lr`` and ``crop_padding`` to the architecture
(``model.ARCHITECTURES``).
"""

import argparse
import dataclasses
import functools
import math
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

import torch

from model import ARCHITECTURES, DEFAULT_ARCH, MEAN, NORMS, STD, build_model
from model.network import StandardizedConv2d
from training.muon import scale_free


@dataclass(frozen=True)
class Recipe:
    """Defaults for the settings left at None, and what has no setting of its own."""

    description: str
    batch_size: int
    lr: float | None  # None: the architecture's own rate for the norm
    weight_decay: float
    label_smoothing: float
    crop_padding: int | None  # None: the architecture's own
    flips: str  # "random", "alternate" or "none" (FLIP_MODES)
    nesterov: bool
    schedule: str  # "one-cycle" (linear warm-up, linear decay) or "constant"
    ema_decay: float = 0.0  # an EMA of the weights is what is evaluated and shipped; 0: none
    whiten_init: bool = False  # the first conv starts as a whitening of the training images' patches
    muon_lr: float | None = 0.0  # Muon's rate for the convs' filters (training.muon); None: the architecture's own
    # The flips of a record that names none: the recipe's before the levers existed. A record leaves out
    # the levers at their unrecorded values, so the records written before a recipe changed still read true.
    unrecorded_flips: str = "random"
    mean: tuple[float, float, float] = MEAN  # the input normalization, on the 0-1 scale
    std: tuple[float, float, float] = STD


RECIPES: dict[str, Recipe] = {
    # Alternating flips and the weights' EMA since the search's trial 7; batch 128, weight decay 0.00025 and the
    # whitening start since its trial 42; Muon at the network's own rate since its trial 107 (python -m
    # training.search, README "Search"): each confirmed on validation over three seeds.
    "ours": Recipe("SGD with Nesterov momentum (Muon for the convs' filters where the network's record gives it a "
                   "rate), one-cycle learning rate, batch 128, random crops, alternating "
                   "flips, weight decay 0.00025, label smoothing 0.1, the first conv started as a whitening of "
                   "the training images' patches, the weights' moving average (decay 0.99) evaluated and shipped",
                   batch_size=128, lr=None, weight_decay=0.0002527, label_smoothing=0.1, crop_padding=None,
                   flips="alternate", nesterov=True, schedule="one-cycle", ema_decay=0.99, whiten_init=True,
                   muon_lr=None),
    # The recipe of the published reference runs, value by value as their notebooks train
    # (Session8_Batch_Norm / _Group_Norm / _Layer_Norm.ipynb with model.py):
    #   optim.SGD(model.parameters(), lr=0.01, momentum=0.9): no Nesterov, no weight decay,
    #     and no scheduler, so the rate is constant for all 20 epochs;
    #   DataLoader(batch_size=128, shuffle=True) over transforms ToTensor() then
    #     Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): no crops, no flips, pixels mapped to [-1, 1];
    #   log_softmax with F.nll_loss: cross-entropy without label smoothing.
    # The network's side (dropout 0.1, GroupNorm with 2 groups, LayerNorm as GroupNorm(1, C),
    # conv -> ReLU -> norm -> dropout) is the reference architecture's (model/network.py).
    "published": Recipe("the published reference runs: SGD with momentum 0.9 at a constant learning rate of "
                        "0.01, batch 128, no augmentation, no weight decay, no label smoothing, inputs "
                        "normalized with mean 0.5 and std 0.5", batch_size=128, lr=0.01, weight_decay=0.0,
                        label_smoothing=0.0, crop_padding=0, flips="none", nesterov=False, schedule="constant",
                        unrecorded_flips="none", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


FLIP_MODES = ("random", "alternate", "none")
SCHEDULES = ("one-cycle", "cosine", "constant")
# The settings added for the search, each off (today's training) unless set: checkpoints record those set.
LEVERS = ("schedule", "warmup_fraction", "flips", "crop_scale", "crop_ratio", "color_jitter", "ema_decay", "dirac_init",
          "whiten_init", "zero_residual", "muon_lr")


class ConfigError(ValueError):
    """A setting is out of range; the message names the command-line option."""


def option(help: str, **argparse_options: Any) -> dict[str, Any]:
    return {"help": help, "argparse": argparse_options}


def recipe_defaults(setting: str, show: Callable[[Any], str] = str) -> str:
    """Each recipe's default for a setting, as its help gives them: "default 128; published recipe: 128"."""
    return "; ".join([f"default {show(getattr(RECIPES['ours'], setting))}"]
                     + [f"{name} recipe: {show(getattr(recipe, setting))}"
                        for name, recipe in RECIPES.items() if name != "ours"])


@functools.cache
def muon_trainable(arch: str, norm: str, gn_groups: int) -> bool:
    """Whether Muon can train this network's filters (``scale_free``). Checked once per network, since a config
    is made often (every ``replace``, every record read) and the check runs a real network twice."""
    with torch.random.fork_rng(devices=[]):  # a real network to run, without moving the seeded RNG
        return scale_free(build_model(arch, norm, gn_groups))


@dataclass(frozen=True)
class TrainConfig:
    arch: str = field(default=DEFAULT_ARCH, metadata=option(
        "network: " + "; ".join(f"'{a.name}' ({a.description})" for a in ARCHITECTURES.values())
        + f" (default {DEFAULT_ARCH})", choices=list(ARCHITECTURES)))
    norm: str = "bn"
    recipe: str = field(default="ours", metadata=option(
        "; ".join(f"'{name}': {recipe.description}" for name, recipe in RECIPES.items())
        + " (default ours); the options below override it", choices=list(RECIPES)))
    epochs: int = field(default=20, metadata=option("default 20 (at most 20)"))
    batch_size: int | None = field(default=None, metadata=option(recipe_defaults("batch_size")))
    lr: float | None = field(default=None, metadata=option(
        "peak learning rate (default, recipe ours: "
        + "; ".join(f"{a.name} " + ", ".join(f"{lr} for {n}" for n, lr in a.lr.items()) for a in ARCHITECTURES.values())
        + ")"))
    momentum: float = 0.9
    weight_decay: float | None = field(default=None, metadata=option(
        "on conv and linear weights only, " + recipe_defaults("weight_decay", lambda decay: f"{decay:g}")))
    label_smoothing: float | None = field(default=None, metadata=option(
        recipe_defaults("label_smoothing", lambda share: f"{share:g}")))
    schedule: str | None = field(default=None, metadata=option(
        "learning-rate schedule: 'one-cycle' (linear warm-up from a tenth of the peak, linear decay to a "
        "thousandth), 'cosine' (the same warm-up, cosine decay to a thousandth) or 'constant' ("
        + recipe_defaults("schedule") + ")", choices=list(SCHEDULES)))
    warmup_fraction: float = field(default=0.25, metadata=option(
        "the share of the steps the learning rate warms up over (default 0.25)"))
    crop_padding: int | None = field(default=None, metadata=option(
        "pixels of reflect padding before the random 32x32 crop (default, recipe ours: "
        + ", ".join(f"{a.crop_padding} for {a.name}" for a in ARCHITECTURES.values())
        + "; published recipe: no crops)"))
    gn_groups: int | None = field(default=None, metadata=option(
        "GroupNorm's group count, which must divide every width (default: "
        + ", ".join(f"{a.gn_groups} for {a.name}" for a in ARCHITECTURES.values()) + "); the other norms ignore it"))
    flips: str | None = field(default=None, metadata=option(
        "horizontal flips: 'random' (each image, each epoch, with probability 1/2), 'alternate' (each image "
        "flipped on every other epoch, half of them starting flipped) or 'none' (" + recipe_defaults("flips") + ")",
        choices=list(FLIP_MODES)))
    crop_scale: float = field(default=1.0, metadata=option(
        "random resized crops: the smallest crop, as a share of a 32x32 image's area, drawn from the padded "
        "image and resized to 32x32 (default 1: plain shifted crops, no resizing)"))
    crop_ratio: float = field(default=1.0, metadata=option(
        "random resized crops: the largest aspect ratio of a crop, drawn log-uniformly between 1/R and R "
        "(default 1: square)"))
    color_jitter: float = field(default=0.0, metadata=option(
        "colour jitter: each image's brightness, contrast and saturation scaled by factors drawn from "
        "[1-J, 1+J] (default 0: off)"))
    ema_decay: float | None = field(default=None, metadata=option(
        "an exponential moving average of the weights, updated after every step with this decay; it is "
        "what is evaluated and exported, BatchNorm's running statistics averaged with it ("
        + recipe_defaults("ema_decay", lambda decay: f"{decay:g}" if decay else "0, off") + ")"))
    dirac_init: bool = field(default=False, metadata=option(
        "identity (Dirac) initialization of every conv whose shape allows it (model.network.dirac_init)",
        action="store_true"))
    whiten_init: bool | None = field(default=None, metadata=option(
        "start the first conv as a whitening of the training images' patches: their principal directions, "
        "each scaled to unit variance and also negated (model.network.whitening_init); "
        + recipe_defaults("whiten_init", lambda on: "on" if on else "off") + "; --no-whiten-init: off",
        action=argparse.BooleanOptionalAction))
    zero_residual: bool = field(default=False, metadata=option(
        "start every residual block as the identity: its last norm's scale at zero "
        "(model.network.zero_residual_init)", action="store_true"))
    muon_lr: float | None = field(default=None, metadata=option(
        "train the convs' filters (all but the first conv's) with Muon at this peak rate, on the same schedule: "
        "their momentum orthogonalized, each step turning them by about this angle (training.muon); the other "
        "weights keep SGD at --lr; 0: SGD for all (default, recipe ours: "
        + ", ".join(f"{a.muon_lr:g} for {a.name}" for a in ARCHITECTURES.values() if a.muon_lr)
        + ", 0 for the others; published recipe: 0)"))
    seed: int = field(default=0, metadata=option("random seed, default 0"))
    train_subset: int | None = field(default=None, metadata=option(
        "train on the first N training images only (quick trials)"))
    validation: bool = field(default=False, metadata=option(
        "hold out the fixed validation split (5,000 training images, 500 per class): train on the other "
        "45,000 and report validation accuracy beside test accuracy; settings are chosen this way",
        action="store_true"))

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        architecture, recipe = ARCHITECTURES[self.arch], RECIPES[self.recipe]
        defaults = {
            "batch_size": recipe.batch_size,
            "lr": recipe.lr if recipe.lr is not None else architecture.lr[self.norm],
            "weight_decay": recipe.weight_decay,
            "label_smoothing": recipe.label_smoothing,
            "crop_padding": recipe.crop_padding if recipe.crop_padding is not None else architecture.crop_padding,
            "gn_groups": architecture.gn_groups,
            "schedule": recipe.schedule,
            "flips": recipe.flips,
            "ema_decay": recipe.ema_decay,
            "whiten_init": recipe.whiten_init,
            "muon_lr": recipe.muon_lr if recipe.muon_lr is not None else architecture.muon_lr,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
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
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})"),
            (0 <= self.warmup_fraction < 1, f"--warmup-fraction must be at least 0 and below 1 "
                                            f"(got {self.warmup_fraction})"),
            (self.flips in FLIP_MODES, f"--flips must be one of {', '.join(FLIP_MODES)} (got {self.flips!r})"),
            (0.1 <= self.crop_scale <= 1, f"--crop-scale must be between 0.1 and 1 (got {self.crop_scale})"),
            (1 <= self.crop_ratio <= 3, f"--crop-ratio must be between 1 and 3 (got {self.crop_ratio})"),
            (0 <= self.color_jitter < 1, f"--color-jitter must be at least 0 and below 1 (got {self.color_jitter})"),
            (0 <= self.ema_decay < 1, f"--ema-decay must be at least 0 and below 1 (got {self.ema_decay})"),
            (0 <= self.muon_lr < 1, f"--muon-lr must be at least 0 and below 1 (got {self.muon_lr})"),
        ]
        for holds, message in checks:
            if not holds:
                raise ConfigError(message)
        if self.norm != "gn":  # the other norms have no groups: one config per norm, whatever --gn-groups says
            object.__setattr__(self, "gn_groups", architecture.gn_groups)
        try:
            with torch.device("meta"):  # only the layer shapes are checked: no memory, no random numbers
                network = build_model(self.arch, "gn", self.gn_groups)
        except ValueError as error:
            raise ConfigError(f"--gn-groups: {error}") from error
        if self.muon_lr and not muon_trainable(self.arch, self.norm, self.gn_groups):
            raise ConfigError(f"--muon-lr: the {self.arch} network has convs that no norm follows (such as a "
                              "last conv that gives the logits), whose scale Muon's steps would change; choose "
                              "one of the residual networks, or leave --muon-lr out")
        if self.dirac_init and any(isinstance(module, StandardizedConv2d) for module in network.modules()):
            raise ConfigError(f"--dirac-init: the {self.arch} network standardizes its convs' filters, so they "
                              "cannot start as identities; leave it out, or choose an --arch without "
                              "weight standardization")

    @property
    def nesterov(self) -> bool:
        return RECIPES[self.recipe].nesterov

    def lever_defaults(self) -> dict[str, Any]:
        """The levers (settings added for the search) as a record leaves them out: each off, as the recipe
        trained before the levers existed (a recipe may now default one elsewhere, which is then recorded)."""
        recipe = RECIPES[self.recipe]
        defaults = {"schedule": recipe.schedule, "warmup_fraction": 0.25, "flips": recipe.unrecorded_flips,
                    "crop_scale": 1.0, "crop_ratio": 1.0, "color_jitter": 0.0, "ema_decay": 0.0, "dirac_init": False,
                    "whiten_init": False, "zero_residual": False, "muon_lr": 0.0}
        return {name: defaults[name] for name in LEVERS}

    def levers(self) -> dict[str, Any]:
        """The levers away from their unrecorded values, as checkpoints record them (absent: that value)."""
        return {name: getattr(self, name) for name, default in self.lever_defaults().items()
                if getattr(self, name) != default}

    RECORDED = ("arch", "recipe", "batch_size", "lr", "crop_padding", "weight_decay", "label_smoothing", "gn_groups")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TrainConfig":
        """The settings a record of a run was trained with (``ConfigError`` if they are not valid ones), its length
        and seed at their defaults: what ``describes`` compares, so two records can be compared through it."""
        recorded = cls(norm=record["norm"], **{key: record[key] for key in cls.RECORDED if key in record})
        return dataclasses.replace(recorded, **{name: record.get(name, unrecorded)
                                                for name, unrecorded in recorded.lever_defaults().items()})

    def describes(self, record: dict[str, Any]) -> bool:
        """Whether a record of a run (a checkpoint's metadata, a trial's model) was trained with these settings,
        its length and seed aside. A record leaves out the levers at their unrecorded values
        (``lever_defaults``), and older records the recipe (ours) and the group count of the other norms."""
        return (all(record.get(key, getattr(self, key)) == getattr(self, key) for key in self.RECORDED)
                and all(record.get(key, unrecorded) == getattr(self, key)
                        for key, unrecorded in self.lever_defaults().items()))

    @property
    def mean(self) -> tuple[float, float, float]:
        """The input normalization's mean (the recipe's): training, evaluation and the checkpoint use it."""
        return RECIPES[self.recipe].mean

    @property
    def std(self) -> tuple[float, float, float]:
        return RECIPES[self.recipe].std

    def as_dict(self) -> dict[str, Any]:
        """The settings, as resume states and sweep setups record them (the recipe only when not ours)."""
        values = asdict(self)
        # Left out at their defaults, so states and sweeps saved before these settings existed still match.
        defaults = {"recipe": "ours", "validation": False, "gn_groups": ARCHITECTURES[self.arch].gn_groups,
                    **{name: default for name, default in self.lever_defaults().items() if name != "warmup_fraction"}}
        for name, default in defaults.items():
            if values[name] == default:
                del values[name]
        return values


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
        options = dict(spec.metadata["argparse"])
        if "action" not in options:  # a switch takes no value
            options["type"] = _value_type(hints[spec.name])
        parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, default=spec.default,
                            help=spec.metadata["help"], **options)


def option_words(settings: dict[str, Any]) -> list[str]:
    """``--name value`` for each setting (a flag alone for a switch that is on, nothing when off, or ``--no-name``
    for a switch whose default is on), as typed."""
    actions = {spec.name: spec.metadata.get("argparse", {}).get("action") for spec in dataclasses.fields(TrainConfig)}
    words: list[str] = []
    for name, value in settings.items():
        option = f"--{name.replace('_', '-')}"
        if actions.get(name) == "store_true":
            words += [option] if value else []
        elif actions.get(name) is argparse.BooleanOptionalAction:
            words += [] if value is None else [option] if value else [f"--no-{name.replace('_', '-')}"]
        elif value is not None:
            words += [option, str(value)]
    return words


def config_from_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser, **fixed: Any) -> TrainConfig:
    """The config the options in ``args`` describe (with ``fixed`` fields set); a bad value ends in ``parser.error``."""
    values = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)
              if "help" in spec.metadata}
    try:
        return TrainConfig(**{**values, **fixed})
    except ConfigError as error:
        parser.error(str(error))


def command_for(config: TrainConfig, seeds: int = 1) -> str:
    """The ``python -m training`` command that trains this config, every setting spelled out, folders as PATH;
    with ``seeds`` above 1, the command that trains that many seeds from the config's (``--seeds``)."""
    # Every lever away from what the command line defaults to: a lever at its unrecorded value (random flips, no
    # EMA) is still spelled out where the recipe now defaults elsewhere.
    default = TrainConfig(arch=config.arch, norm=config.norm, recipe=config.recipe)
    levers = {name: getattr(config, name) for name in LEVERS if getattr(config, name) != getattr(default, name)}
    settings = {"norm": config.norm, "arch": config.arch, "recipe": None if config.recipe == "ours" else config.recipe,
                "epochs": config.epochs, "lr": config.lr,
                "batch_size": config.batch_size, "weight_decay": config.weight_decay,
                "label_smoothing": config.label_smoothing, "crop_padding": config.crop_padding,
                "gn_groups": config.gn_groups if config.norm == "gn" else None, **levers,
                "seed": None if seeds > 1 and config.seed == 0 else config.seed, "seeds": seeds if seeds > 1 else None,
                "train_subset": config.train_subset, "validation": config.validation}
    return " ".join(["python -m training", *option_words(settings), "--data-dir PATH"])
