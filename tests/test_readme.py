"""The README's result tables are generated from the checkpoint folder: they cannot drift from the files."""

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from artifacts.folder import CheckpointFolder
from model import NORMS, build_model, network_fingerprint
from tests.conftest import CHECKPOINTS, REPO
from training.readme import MARKER, SECTIONS, main, render

README = REPO / "README.md"


def test_every_generated_section_of_the_readme_matches_the_files() -> None:
    text = README.read_text()
    assert {match["name"] for match in MARKER.finditer(text)} == set(SECTIONS)  # every table is generated
    rendered = render(text, CheckpointFolder(CHECKPOINTS))
    stale = [m["name"] for m in MARKER.finditer(text)
             if m["body"] != next(r for r in MARKER.finditer(rendered) if r["name"] == m["name"])["body"]]
    assert not stale, f"README out of date in {stale}: run `python -m training.readme`"


def test_a_changed_number_in_the_files_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "checkpoints"
    shutil.copytree(CHECKPOINTS, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.npz", "*.png"))
    results = json.loads((folder / "results.json").read_text())
    results["over_seeds"]["gn"]["test_accuracy"]["mean"] += 0.0001  # 0.01 points
    (folder / "results.json").write_text(json.dumps(results))
    readme = tmp_path / "README.md"
    shutil.copy(README, readme)
    assert main(["--readme", str(readme), "--checkpoint-dir", str(folder), "--check"]) == 1
    assert "disagrees with the files" in capsys.readouterr().err and "results" in readme.read_text()
    assert main(["--readme", str(readme), "--checkpoint-dir", str(folder)]) == 0  # rebuilds it
    assert main(["--readme", str(readme), "--checkpoint-dir", str(folder), "--check"]) == 0
    assert readme.read_text() != README.read_text()


def test_an_unknown_section_is_refused() -> None:
    with pytest.raises(ValueError, match="'headline' is not one of"):
        render("<!-- generated: headline -->\nold\n<!-- end: headline -->\n", CheckpointFolder(CHECKPOINTS))


def test_the_searchs_trials_stay_out_of_the_tables_of_runs_made_by_hand(tmp_path: Path) -> None:
    from artifacts.trials import read_trials, write_trials
    from training.readme import trials_table

    folder = CheckpointFolder(tmp_path)
    by_hand = read_trials(CheckpointFolder(CHECKPOINTS).trials)
    searched = {"study": "screen", "trial": 0, "state": "COMPLETE", "value": 0.9, "device": "CPU (1 thread)",
                "commands": {"bn": "python -m training --norm bn --validation"}, "params": {},
                "models": {"bn": {"norm": "bn", "validation_accuracy": 0.9}}}
    write_trials(folder.trials, [*by_hand, searched])
    assert trials_table(folder, "validation_accuracy") == trials_table(CheckpointFolder(CHECKPOINTS),
                                                                        "validation_accuracy")


def test_the_published_runs_are_set_against_the_spread_of_ours(tmp_path: Path) -> None:
    """Within our seeds' range, only within the interval for one more run, or outside it: each says so."""
    from model import ARCHITECTURES
    from training.readme import reproduction_table

    folder = CheckpointFolder(tmp_path / "checkpoints")
    shutil.copytree(CHECKPOINTS, folder.root, ignore=shutil.ignore_patterns("*.safetensors", "*.npz", "*.png"))
    cell = folder.grid_cell("reference", ARCHITECTURES["reference"].published_recipe)
    results = json.loads(cell.results.read_text())
    seeds = {"bn": [0.740, 0.745, 0.750],  # published 74.71: inside the range
             "gn": [0.735, 0.737, 0.739],  # published 72.93: below the range, inside 73.70 ± 0.99
             "ln": [0.760, 0.761, 0.762]}  # published 73.42: far below
    for norm, tests in seeds.items():
        runs = [{"seed": seed, "test_accuracy": test, "train_accuracy": 0.75} for seed, test in enumerate(tests)]
        results["over_seeds"][norm] = {"seeds": [0, 1, 2], "runs": runs,
                                       "test_accuracy": {"mean": sum(tests) / 3, "std": 0.0, "n": 3},
                                       "train_accuracy": {"mean": 0.75, "std": 0.0, "n": 3}}
    cell.results.write_text(json.dumps(results))
    rows = {line.split(" | ")[0].strip("| "): line for line in reproduction_table(folder).splitlines()[2:]}
    assert rows["BatchNorm"].endswith("| yes: within our seeds' range |")
    assert "| 73.50 to 73.90% | 72.71 to 74.69% | yes: outside our seeds' range, within the interval for one run |" \
        in rows["GroupNorm"]
    assert rows["LayerNorm"].endswith("| no: 2.68 points below our mean |")


def test_the_search_tables_rank_candidates_and_say_what_each_changes(tmp_path: Path) -> None:
    from artifacts.trials import write_trials
    from training.readme import confirmation_table, screening_table
    from training.search.space import baseline, shipped_values, suggest

    def trial(study: str, number: int, state: str, value: float | None, params: dict, epochs: int = 8,
              **extra) -> dict:
        models = {norm: {"norm": norm, "epochs": epochs, "epochs_trained": 3 if state == "PRUNED" else epochs,
                         "train_images": 45_000, "validation_accuracy": value + offset}
                  for norm, offset in (("bn", 0.01), ("gn", 0.0), ("ln", -0.01))}
        return {"study": study, "trial": number, "state": state, "value": value, "device": "CPU",
                "commands": {}, "params": params, "models": models, **extra}

    # Each candidate is described by what it changes from the recipe shipped now, the study's start too.
    shipped = baseline(["bn", "gn", "ln"])
    start = suggest(optuna.trial.FixedTrial({**shipped_values(["bn", "gn", "ln"]), "arch": "residual",
                                             "ema_decay": 0.0}), ["bn", "gn", "ln"])
    better = {**shipped, "attention": True}
    folder = CheckpointFolder(tmp_path)
    write_trials(folder.trials, [
        trial("screen", 0, "COMPLETE", 0.80, start),
        trial("screen", 1, "PRUNED", 0.60, {**shipped, "weight_decay": 1e-4}),
        trial("screen", 2, "FAIL", 0.70, better),  # stopped, then queued again as trial 3
        trial("screen", 3, "COMPLETE", 0.82, better, retry_of=2),
        trial("screen", 4, "FAIL", 0.5, start),  # stopped, queued again as trial 5, which waits for a worker
        {**trial("screen", 5, "WAITING", 0.0, start, retry_of=4), "value": None, "models": {}},
        *(trial("confirm", seed, "COMPLETE", 0.86 + seed / 100, {**better, "seed": seed}, epochs=20, screen_trial=3)
          for seed in (0, 1)),
    ])
    lines = screening_table(folder).splitlines()
    assert lines[0].startswith("4 candidates screened (2 complete, 1 pruned, 1 stopped, waiting to continue), "
                               "8 epochs each on 45,000 training")
    assert [line.split(" | ")[:3] for line in lines[4:]] == [
        ["| 3", "complete", "attention=True"], ["| 0", "complete", "arch=residual, ema_decay=0"],
        ["| 1", "pruned after epoch 3", "weight_decay=0.0001"],
        ["| 5", "stopped, waiting to continue", "arch=residual, ema_decay=0"]]
    assert lines[4].endswith("| 82.00% | 83.00% | 82.00% | 81.00% |")
    [row] = confirmation_table(folder).splitlines()[2:]
    assert row == ("| 3 | attention=True | 20 | 0 (0), 1 (1) | 87.50 ± 0.71 | 86.50 ± 0.71 "
                   "| 85.50 ± 0.71 |")


def test_the_confirmation_compares_each_candidate_with_the_starting_recipes_own_runs(tmp_path: Path) -> None:
    from artifacts.trials import trial_record, write_trials
    from training.config import TrainConfig
    from training.readme import confirmation_table
    from training.search.space import JOINED_LATER, baseline

    # The recipe shipped when the search began, which ran before the batch size and the whitening joined the space.
    start = {"arch": "residual", "flips": "random", "ema_decay": 0.0, "weight_decay": 0.0005}
    ran_at = {"batch_size": 256, "whiten_init": False}

    def recorded(seed: int, accuracies: dict[str, float], train_images: int = 45_000, **changed) -> dict:
        models = {}
        for norm, accuracy in accuracies.items():
            config = TrainConfig(norm=norm, seed=seed, validation=True, **{**start, **ran_at, **changed})
            models[norm] = {**{key: getattr(config, key) for key in (
                "arch", "norm", "recipe", "seed", "epochs", "batch_size", "lr", "crop_padding", "weight_decay",
                "label_smoothing")}, **config.levers(), "train_images": train_images, "validation_accuracy": accuracy}
        return trial_record("python -m training --validation", "CPU", models)

    def confirmed(seed: int, accuracies: dict[str, float]) -> dict:
        return {"study": "confirm", "trial": seed, "state": "COMPLETE", "value": 0.0, "device": "CPU", "commands": {},
                "params": {"arch": "residual-gelu", "seed": seed}, "screen_trial": 7,
                "models": {norm: {"norm": norm, "epochs": 20, "train_images": 45_000, "validation_accuracy": accuracy}
                           for norm, accuracy in accuracies.items()}}

    folder = CheckpointFolder(tmp_path)
    write_trials(folder.trials, [
        recorded(0, {"bn": 0.860, "gn": 0.840, "ln": 0.835}),
        recorded(1, {"bn": 0.858, "gn": 0.842, "ln": 0.833}),
        recorded(1, {"ln": 0.700}, lr=0.2),  # another setting: not the starting recipe
        recorded(1, {"ln": 0.700}, ema_decay=0.99),  # a lever set: not the starting recipe either
        recorded(2, {"gn": 0.700}, arch="residual-gelu", flips="alternate", ema_decay=0.99),  # the shipped recipe
        recorded(2, {"bn": 0.700}, train_images=10_000),  # fewer training images than the candidates had
        {"study": "screen", "trial": 0, "state": "COMPLETE", "value": 0.8, "device": "CPU", "commands": {},
         "params": {key: value for key, value in {**baseline(["bn", "gn", "ln"]), **start}.items()
                    if key not in JOINED_LATER} | {f"lr_scale_{norm}": 1.0 for norm in NORMS}, "models": {}},
        confirmed(0, {"bn": 0.861, "gn": 0.850, "ln": 0.850}),
        confirmed(1, {"bn": 0.859, "gn": 0.852, "ln": 0.852}),
    ])
    lines = confirmation_table(folder).splitlines()
    assert lines[3] == ("| – | arch=residual, lr_scale_bn=1, lr_scale_gn=1, lr_scale_ln=1, weight_decay=0.0005, "
                        "flips=random, ema_decay=0, batch_size=256, whiten_init=False, muon_lr=0 (trial 0's recipe, "
                        "shipped when the search began; runs recorded by hand) | 20 | BN 0, 1; GN 0, 1; LN 0, 1 "
                        "| 85.90 ± 0.14 | 84.10 ± 0.14 | 83.40 ± 0.14 |")
    # BN: +0.1 points, within the seeds' spread; GN and LN: +1.0 and +1.7, each interval above zero.
    assert lines[-1] == "| trial 7 − trial 0's recipe | +0.1 (−0.5 to +0.7) | **+1.0 (+0.4 to +1.6)** " \
                        "| **+1.7 (+1.1 to +2.3)** |"


def test_a_grid_cell_trained_before_its_recipe_changed_is_not_shown(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.readme import describes_current_training

    with torch.device("meta"):
        network = network_fingerprint(build_model("reference", "bn"))
    today = {"arch": "reference", "norm": "bn", "network": network, **TrainConfig(arch="reference").levers()}
    assert describes_current_training(today)
    # Our recipe before the search's alternating flips and EMA: the record names neither.
    assert not describes_current_training({key: value for key, value in today.items()
                                           if key not in ("flips", "ema_decay")})
    assert not describes_current_training({**today, "network": "0" * 16})
    # The published recipe has not changed: its records, which name no lever, still count.
    assert describes_current_training({"arch": "reference", "norm": "bn", "network": network, "recipe": "published"})


def test_a_record_of_several_seeds_gives_each_seeds_accuracy_under_its_norm(tmp_path: Path) -> None:
    from artifacts.trials import write_trials
    from training.readme import trials_table

    folder = CheckpointFolder(tmp_path)
    models = {f"{norm}-seed{seed}": {"norm": norm, "seed": seed, "validation_accuracy": 0.8 + seed / 100}
              for norm in NORMS for seed in (0, 1)}
    write_trials(folder.trials, [{"command": "python -m training --norm all --validation --seeds 2",
                                  "device": "CPU (1 thread)", "models": models}])
    assert "| `--seeds 2` | CPU | 80.00%, 81.00% | 80.00%, 81.00% | 80.00%, 81.00% |" in trials_table(
        folder, "validation_accuracy")


def test_the_networks_table_lists_every_record_with_its_parameters() -> None:
    from model import ARCHITECTURES, DEFAULT_ARCH, count_parameters
    from training.readme import architectures_table

    rows = {line.split(" | ")[0].strip("| "): line for line in architectures_table(CheckpointFolder(CHECKPOINTS))
            .splitlines()[2:]}
    assert len(rows) == len(ARCHITECTURES)
    for name, record in ARCHITECTURES.items():
        key = f"`{name}`" + (" (default)" if name == DEFAULT_ARCH else "")
        parameters = count_parameters(build_model(name, "ln"))
        assert rows[key] == f"| {key} | {record.description} | {parameters:,} |"
