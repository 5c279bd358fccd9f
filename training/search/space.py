"""What the search may change, as Optuna suggestions, and the training configs a set of choices makes.

Every setting here is one of ``TrainConfig``'s (``training/config.py``): a trial's choices are
plain training runs, each of which ``python -m training`` can repeat with the command
``training.config.command_for`` gives. The network and the levers are shared by the three norms (one network
trained three times is what the project compares); the learning rate is scaled per norm from
the architecture's own, and the group count only reaches GroupNorm.
"""

import json
import warnings
from typing import Any

import optuna

from artifacts.trials import changed_settings
from model.architectures import ARCHITECTURES, RESIDUAL_LR
from training.config import LEVERS, ConfigError, TrainConfig

# Fixed, in this order: a study refuses a categorical whose choices changed. "residual" was the shipped
# network when the study began (its trial 0), "residual-gelu" the one shipped after trial 7, "residual-silu" after
# trial 42.
ARCHS = ["residual", "residual-silu", "residual-gelu", "late", "deep16", "separable"]


# ResidualNet's options a trial may switch on. A network that joined the registry after the study began cannot be
# one of ARCHS; one built on a network of ARCHS with these options is drawn as that network with its options (the
# shipped network, "standardized", is "residual-silu" with standardize). They joined the space after trial 94.
NETWORK_OPTIONS = ("standardize", "attention")


def in_space(arch: str) -> str:
    """The network the space holds that ``arch`` is built on (``Architecture.built_on``, followed back), or
    ``arch`` itself: ``arch`` is that network with ``network_options(arch)``."""
    start = arch
    while arch not in ARCHS and ARCHITECTURES[arch].built_on is not None:
        arch = ARCHITECTURES[arch].built_on
    return arch if arch in ARCHS else start


def network_options(arch: str) -> dict[str, bool]:
    """Which of ``NETWORK_OPTIONS`` the record ``arch`` switches on."""
    keywords = getattr(ARCHITECTURES[arch].network, "keywords", {})
    return {name: bool(keywords.get(name, False)) for name in NETWORK_OPTIONS}


def archs_with_options() -> list[str]:
    """The networks of ``ARCHS`` that some record builds on with options: a trial on one of them draws them."""
    return [arch for arch in ARCHS
            if any(in_space(name) == arch and any(network_options(name).values()) for name in ARCHITECTURES)]


def network_for(arch: str, options: dict[str, bool]) -> str:
    """The record that is ``arch`` with ``options`` (``arch`` itself when none is on); ValueError when none is."""
    for name in ARCHITECTURES:
        if in_space(name) == arch and network_options(name) == options:
            return name
    switched = ", ".join(name for name, on in options.items() if on)
    raise ValueError(f"no network is {arch} with {switched}")


def suggest(trial: optuna.Trial, norms: list[str]) -> dict[str, Any]:
    """One set of choices for ``trial``: the same names and distributions in every trial of a study."""
    params: dict[str, Any] = {"arch": trial.suggest_categorical("arch", ARCHS)}
    if params["arch"] in archs_with_options():
        params.update({name: trial.suggest_categorical(name, [False, True]) for name in NETWORK_OPTIONS})
    for norm in norms:
        # A factor on the residual family's peak rate for the norm (RESIDUAL_LR: 0.3 / 0.2 / 0.1).
        params[f"lr_scale_{norm}"] = trial.suggest_float(f"lr_scale_{norm}", 0.5, 2.0, log=True)
    params.update(
        weight_decay=trial.suggest_float("weight_decay", 1e-4, 2e-3, log=True),
        label_smoothing=trial.suggest_categorical("label_smoothing", [0.0, 0.1, 0.2]),
        crop_padding=trial.suggest_categorical("crop_padding", [0, 2, 4]),
        crop_scale=trial.suggest_categorical("crop_scale", [1.0, 0.75, 0.5, 0.35]),
        crop_ratio=trial.suggest_categorical("crop_ratio", [1.0, 1.33]),
        color_jitter=trial.suggest_categorical("color_jitter", [0.0, 0.1, 0.2, 0.4]),
        flips=trial.suggest_categorical("flips", ["random", "alternate"]),
        ema_decay=trial.suggest_categorical("ema_decay", [0.0, 0.99, 0.995]),
        whiten_init=trial.suggest_categorical("whiten_init", [False, True]),
        zero_residual=trial.suggest_categorical("zero_residual", [False, True]),
        schedule=trial.suggest_categorical("schedule", ["one-cycle", "cosine"]),
        warmup_fraction=trial.suggest_categorical("warmup_fraction", [0.1, 0.25]),
        # More steps in the same 20 epochs, at the same peak rates (the lr_scale_* factors move them). It joined
        # the space after the study began: its earlier trials ran at 256 and name no batch size.
        batch_size=trial.suggest_categorical("batch_size", [128, 256, 512]),
        # Muon for the convs' filters at this peak rate (0: SGD for all); joined after trial 106.
        muon_lr=trial.suggest_categorical("muon_lr", [0.0, 0.015, 0.03, 0.06]),
    )
    if not params.get("standardize"):  # no identity survives standardizing the filters (TrainConfig refuses it)
        params["dirac_init"] = trial.suggest_categorical("dirac_init", [False, True])
    if "gn" in norms:
        params["gn_groups"] = trial.suggest_categorical("gn_groups", [2, 4, 8])
    return params


# The names that joined the space after the study began, at the value every trial drawn before them ran with:
# a trial that does not name one ran at this value.
JOINED_LATER: dict[str, Any] = {"batch_size": 256, "whiten_init": False, "zero_residual": False,
                                **dict.fromkeys(NETWORK_OPTIONS, False), "muon_lr": 0.0}


def in_full(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's choices with every name that joined the space after it ran, at the value it ran with."""
    return {**params, **{name: value for name, value in JOINED_LATER.items() if name not in params}}


def same_choices(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two trials' choices train the same thing, a name that joined the space later read at its value
    in the trial that does not name it."""
    return in_full(first) == in_full(second)


def shipped_values(norms: list[str]) -> dict[str, Any]:
    """Every name of the space at the shipped recipe's value, those the shipped network is not drawn with too."""
    default = TrainConfig()
    scales = {f"lr_scale_{norm}": TrainConfig(norm=norm).lr / RESIDUAL_LR[norm] for norm in norms}
    return {"arch": in_space(default.arch), **network_options(default.arch), **scales,
            "weight_decay": default.weight_decay, "label_smoothing": default.label_smoothing,
            "crop_padding": default.crop_padding, **{name: getattr(default, name) for name in LEVERS},
            "batch_size": default.batch_size, **({"gn_groups": default.gn_groups} if "gn" in norms else {})}


def baseline(norms: list[str]) -> dict[str, Any]:
    """The shipped recipe in the space's terms (its network as ``in_space`` reads it, with its options): the first
    trial of a new study, so every other is compared with it."""
    return suggest(optuna.trial.FixedTrial(shipped_values(norms)), norms)  # the names drawn with these choices


def changes_from_shipped(params: dict[str, Any], norms: list[str]) -> str:
    """A trial's choices that differ from the shipped recipe in the space's terms (``baseline``), in a line, each
    name that joined the space after the trial read at the value it ran with ("the shipped recipe" when none
    differ)."""
    trial, shipped = in_full(params), shipped_values(norms)
    if trial["arch"] != shipped["arch"]:  # the options are those of the shipped network's layers
        trial = {key: value for key, value in trial.items() if key not in NETWORK_OPTIONS}
    return changed_settings(trial, shipped)


def idea_choices(text: str, norms: list[str]) -> dict[str, Any]:
    """A full set of choices from a JSON object naming some of them (the rest as shipped), or a ValueError saying
    which name or value the space does not hold, or which settings cannot train together, so a queued idea is one
    the sampler could have drawn."""
    try:
        idea = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"an idea to queue is a JSON object such as '{{\"ema_decay\": 0.99}}': {error}") from None
    if not isinstance(idea, dict):
        raise ValueError(f"an idea to queue is a JSON object of the space's names, not {text!r}")
    shipped = shipped_values(norms)
    params = {**shipped, **idea}
    unknown = sorted(set(params) - set(shipped))
    if unknown:
        names = ", ".join(sorted(shipped))
        raise ValueError(f"not in the search space: {', '.join(unknown)} (it holds {names})")
    for key, value in idea.items():
        if isinstance(shipped[key], float) and type(value) is int:
            params[key] = float(value)  # JSON writes 1.0 as 1
        elif type(value) is not type(shipped[key]):
            raise ValueError(f"{key} takes values like {shipped[key]!r} ({type(shipped[key]).__name__}), "
                             f"not {value!r}")
    arch = params["arch"]
    if arch in ARCHITECTURES and arch not in ARCHS and in_space(arch) in ARCHS:  # drawn as a network with options
        spelled = {"arch": in_space(arch), **{name: True for name, on in network_options(arch).items() if on}}
        raise ValueError(f"{json.dumps(idea)} is outside the search space, which draws the {arch} network "
                         f"as {json.dumps(spelled)}")
    # An option the drawn network does not take is refused when the idea switches it on, else left out, as the
    # sampler leaves it out.
    if arch not in archs_with_options():
        named = [name for name in NETWORK_OPTIONS if idea.get(name)]
        if named:
            raise ValueError(f"{json.dumps(idea)} is outside the search space: {', '.join(named)} is drawn only "
                             f"with arch {' or '.join(archs_with_options())}")
        params.update(dict.fromkeys(NETWORK_OPTIONS, False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna only warns when a number is outside its range
        try:
            drawn = suggest(optuna.trial.FixedTrial(params), norms)
        except (ValueError, UserWarning) as error:
            raise ValueError(f"{json.dumps(idea)} is outside the search space: {error}") from None
    # Settings the space holds one by one but that cannot train together: TrainConfig says which, and the sampler
    # never draws them together. The idea as named, since the drawn choices leave out what the network does not take.
    try:
        trial_configs(params, norms, epochs=1)
    except ConfigError as error:
        raise ValueError(f"{json.dumps(idea)} is outside the search space, as its settings cannot train together: "
                         f"{error}") from None
    return drawn


def trial_configs(params: dict[str, Any], norms: list[str], epochs: int, seed: int = 0,
                  train_subset: int | None = None, validation: bool = True) -> list[TrainConfig]:
    """One config per norm, ``epochs`` long, with the validation split held out (the search never sees the test set;
    ``validation=False`` gives the configs that train the shipped models on all 50,000 images)."""
    params = in_full(params)  # a trial from before a name joined the space ran at its old value, not today's default
    settings = {key: value for key, value in params.items()
                if not key.startswith("lr_scale_") and key not in ("gn_groups", "seed", *NETWORK_OPTIONS)}
    settings["arch"] = network_for(params["arch"], {name: params[name] for name in NETWORK_OPTIONS})
    settings["weight_decay"] = float(f"{settings['weight_decay']:.4g}")  # a command one can read; 0.01% apart
    # The factors are on the rates every architecture of the space started from, fixed like ARCHS: a trial's
    # rates stay what it trained with when a shipped architecture's own rates change.
    return [TrainConfig(**settings, norm=norm, epochs=epochs, seed=params.get("seed", seed), validation=validation,
                        train_subset=train_subset, lr=round(RESIDUAL_LR[norm] * params[f"lr_scale_{norm}"], 6),
                        gn_groups=params.get("gn_groups") if norm == "gn" else None)
            for norm in norms]
