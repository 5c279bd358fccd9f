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
from training.config import LEVERS, TrainConfig

# Fixed, in this order: a study refuses a categorical whose choices changed. "residual" was the shipped
# network when the study began (its trial 0), "residual-gelu" the one shipped after trial 7, "residual-silu" after
# trial 42.
ARCHS = ["residual", "residual-silu", "residual-gelu", "late", "deep16", "separable"]


def in_space(arch: str) -> str:
    """The network the space holds that ``arch`` is built on (``Architecture.built_on``, followed back), or
    ``arch`` itself. The shipped network joined the registry after the study began, so the space cannot draw
    it: in the space's terms the shipped recipe is the one on this network (the shipped one's options aside).
    A queued idea and a new study's first trial start from there."""
    start = arch
    while arch not in ARCHS and ARCHITECTURES[arch].built_on is not None:
        arch = ARCHITECTURES[arch].built_on
    return arch if arch in ARCHS else start


def suggest(trial: optuna.Trial, norms: list[str]) -> dict[str, Any]:
    """One set of choices for ``trial``: the same names and distributions in every trial of a study."""
    params: dict[str, Any] = {"arch": trial.suggest_categorical("arch", ARCHS)}
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
        dirac_init=trial.suggest_categorical("dirac_init", [False, True]),
        whiten_init=trial.suggest_categorical("whiten_init", [False, True]),
        zero_residual=trial.suggest_categorical("zero_residual", [False, True]),
        schedule=trial.suggest_categorical("schedule", ["one-cycle", "cosine"]),
        warmup_fraction=trial.suggest_categorical("warmup_fraction", [0.1, 0.25]),
        # More steps in the same 20 epochs, at the same peak rates (the lr_scale_* factors move them). It joined
        # the space after the study began: its earlier trials ran at 256 and name no batch size.
        batch_size=trial.suggest_categorical("batch_size", [128, 256, 512]),
    )
    if "gn" in norms:
        params["gn_groups"] = trial.suggest_categorical("gn_groups", [2, 4, 8])
    return params


# The names that joined the space after the study began, at the value every trial drawn before them ran with:
# a trial that does not name one ran at this value.
JOINED_LATER: dict[str, Any] = {"batch_size": 256, "whiten_init": False, "zero_residual": False}


def in_full(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's choices with every name that joined the space after it ran, at the value it ran with."""
    return {**params, **{name: value for name, value in JOINED_LATER.items() if name not in params}}


def same_choices(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two trials' choices train the same thing, a name that joined the space later read at its value
    in the trial that does not name it."""
    return in_full(first) == in_full(second)


def baseline(norms: list[str]) -> dict[str, Any]:
    """The shipped recipe in the space's terms (its network as ``in_space`` reads it): the first trial of a new
    study, so every other is compared with it."""
    default = TrainConfig()
    scales = {f"lr_scale_{norm}": TrainConfig(norm=norm).lr / RESIDUAL_LR[norm] for norm in norms}
    return {"arch": in_space(default.arch), **scales,
            "weight_decay": default.weight_decay, "label_smoothing": default.label_smoothing,
            "crop_padding": default.crop_padding, **{name: getattr(default, name) for name in LEVERS},
            "batch_size": default.batch_size,
            **({"gn_groups": default.gn_groups} if "gn" in norms else {})}


def changes_from_shipped(params: dict[str, Any], norms: list[str]) -> str:
    """A trial's choices that differ from the shipped recipe in the space's terms (``baseline``), in a line, each
    name that joined the space after the trial read at the value it ran with ("the shipped recipe" when none
    differ)."""
    return changed_settings(in_full(params), baseline(norms))


def idea_choices(text: str, norms: list[str]) -> dict[str, Any]:
    """A full set of choices from a JSON object naming some of them (the rest as shipped), or a ValueError saying
    which name or value the space does not hold, so a queued idea is one the sampler could have drawn."""
    try:
        idea = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"an idea to queue is a JSON object such as '{{\"ema_decay\": 0.99}}': {error}") from None
    if not isinstance(idea, dict):
        raise ValueError(f"an idea to queue is a JSON object of the space's names, not {text!r}")
    shipped = baseline(norms)
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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna only warns when a number is outside its range
        try:
            suggest(optuna.trial.FixedTrial(params), norms)
        except (ValueError, UserWarning) as error:
            raise ValueError(f"{json.dumps(idea)} is outside the search space: {error}") from None
    return params


def trial_configs(params: dict[str, Any], norms: list[str], epochs: int, seed: int = 0,
                  train_subset: int | None = None, validation: bool = True) -> list[TrainConfig]:
    """One config per norm, ``epochs`` long, with the validation split held out (the search never sees the test set;
    ``validation=False`` gives the configs that train the shipped models on all 50,000 images)."""
    params = in_full(params)  # a trial from before a name joined the space ran at its old value, not today's default
    settings = {key: value for key, value in params.items()
                if not key.startswith("lr_scale_") and key not in ("gn_groups", "seed")}
    settings["weight_decay"] = float(f"{settings['weight_decay']:.4g}")  # a command one can read; 0.01% apart
    # The factors are on the rates every architecture of the space started from, fixed like ARCHS: a trial's
    # rates stay what it trained with when a shipped architecture's own rates change.
    return [TrainConfig(**settings, norm=norm, epochs=epochs, seed=params.get("seed", seed), validation=validation,
                        train_subset=train_subset, lr=round(RESIDUAL_LR[norm] * params[f"lr_scale_{norm}"], 6),
                        gn_groups=params.get("gn_groups") if norm == "gn" else None)
            for norm in norms]
