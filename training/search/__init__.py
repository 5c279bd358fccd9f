"""python -m training.search: the search for a stronger recipe, as Optuna studies in one journal file.

``space``: what a trial may change, and the training configs its choices make. ``runner``: one
trial's training, the norms side by side, reported epoch by epoch. ``storage``: the journal with
heartbeats, so a killed worker's trial is retried. ``record``: the studies as the one record of
trials, trials.json generated from them, and the record in words.
"""

try:
    import optuna  # noqa: F401 - only to say what to install when it is missing
except ModuleNotFoundError as error:
    if error.name != "optuna":
        raise  # Optuna is there but broken: its own error says more
    raise SystemExit("The search needs Optuna, which the app does not: pip install -r requirements-train.txt") from None
