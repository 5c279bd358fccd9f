"""python -m training.search: the space, the journal with heartbeats, the record, and a study end to end."""

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import training.search.runner as runner
from artifacts.folder import CheckpointFolder
from artifacts.trials import read_trials
from artifacts.weights import load_checkpoint
from model import ARCHITECTURES, DEFAULT_ARCH
from tests.app_server import ROOT
from training.__main__ import parse_args as training_args
from training.config import TrainConfig, command_for
from training.data import Split
from training.search.__main__ import main
from training.search.record import (
    CONFIRM,
    RECORDED,
    SCREEN,
    describe,
    import_trials,
    record_run,
    recorded_study,
    trial_records,
)
from training.search.space import (
    ARCHS,
    JOINED_LATER,
    NETWORK_OPTIONS,
    archs_with_options,
    baseline,
    changes_from_shipped,
    in_space,
    network_for,
    network_options,
    shipped_values,
    suggest,
    trial_configs,
)
from training.search.storage import HOST, HeartbeatJournalStorage, SearchError, open_study

NORMS = ["bn", "gn", "ln"]
SHIPPED_TRIALS = ROOT / "checkpoints" / "trials.json"


def as_drawn(**changes) -> dict:
    """The shipped recipe with ``changes``, in the names the space draws with them."""
    return suggest(optuna.trial.FixedTrial({**shipped_values(NORMS), **changes}), NORMS)


def storage_in(tmp_path: Path, **options) -> HeartbeatJournalStorage:
    return HeartbeatJournalStorage(tmp_path / "search" / "journal.log", **options)


# ---- the space ------------------------------------------------------------------------------------------

def test_the_first_trial_of_a_study_is_exactly_the_shipped_recipe_on_validation_in_the_spaces_terms() -> None:
    # The shipped network joined the registry after the study began: the space draws it as the network it is built
    # on with its options, and trains the shipped network itself.
    assert DEFAULT_ARCH not in ARCHS and in_space(DEFAULT_ARCH) in ARCHS
    assert baseline(NORMS)["arch"] == in_space(DEFAULT_ARCH) and baseline(NORMS)["standardize"] is True
    for config in trial_configs(baseline(NORMS), NORMS, epochs=20):
        assert config == TrainConfig(norm=config.norm, validation=True), config.norm
    shipped = ARCHITECTURES[DEFAULT_ARCH]
    assert shipped.lr == ARCHITECTURES[in_space(DEFAULT_ARCH)].lr  # the shipped rates, crops and groups
    assert (shipped.crop_padding, shipped.gn_groups) == (ARCHITECTURES[in_space(DEFAULT_ARCH)].crop_padding,
                                                         ARCHITECTURES[in_space(DEFAULT_ARCH)].gn_groups)


def test_a_network_outside_the_space_is_read_as_the_one_in_it_that_it_is_built_on() -> None:
    assert in_space("standardized-attention") == "residual-silu"  # built on standardized, built on residual-silu
    assert in_space("residual-gelu") == "residual-gelu"  # in the space already
    assert in_space("early") == "early"  # built on none, outside the space: left as it is
    assert all(arch.built_on in ARCHITECTURES for arch in ARCHITECTURES.values() if arch.built_on is not None)


@pytest.mark.parametrize(("options", "arch"), [
    ({}, "residual-silu"), ({"standardize": True}, "standardized"), ({"attention": True}, "attention"),
    ({"standardize": True, "attention": True}, "standardized-attention"),
])
def test_a_trial_trains_the_network_its_arch_and_options_name(options: dict, arch: str) -> None:
    params = {**baseline(NORMS), **dict.fromkeys(NETWORK_OPTIONS, False), **options}
    assert {config.arch for config in trial_configs(params, NORMS, epochs=8)} == {arch}
    assert network_options(arch) == {**dict.fromkeys(NETWORK_OPTIONS, False), **options}


def test_only_a_network_with_optional_versions_draws_the_options_and_only_an_unstandardized_one_an_identity_start(
) -> None:
    assert archs_with_options() == ["residual-silu"]
    late = suggest(optuna.trial.FixedTrial({**baseline(NORMS), "arch": "late", "dirac_init": True}), NORMS)
    assert not set(NETWORK_OPTIONS) & set(late) and late["dirac_init"] is True
    assert "dirac_init" not in baseline(NORMS)  # the shipped network is standardized
    assert changes_from_shipped({**late, "dirac_init": False}, NORMS) == "arch=late"
    with pytest.raises(ValueError, match="no network is late with attention"):
        network_for("late", {"standardize": False, "attention": True})


@pytest.mark.parametrize("arch", ARCHS)
def test_every_set_of_choices_the_space_draws_can_train(arch: str) -> None:
    # suggest leaves out what the drawn network cannot take; TrainConfig is what refuses it.
    options = ([dict(zip(NETWORK_OPTIONS, values, strict=True)) for values in product([False, True], repeat=2)]
               if arch in archs_with_options() else [{}])
    for chosen in options:
        for dirac in (False, True):
            drawn = suggest(optuna.trial.FixedTrial({**baseline(NORMS), "arch": arch, **chosen, "dirac_init": dirac}),
                            NORMS)
            trial_configs(drawn, NORMS, epochs=1)  # raises ConfigError if the space drew what cannot train


def test_a_trial_from_before_a_name_joined_the_space_trains_at_that_names_old_value() -> None:
    # Trial 7 ran at batch 256, unwhitened, before those names joined the space; confirming it again today must
    # train that, not the batch size and start our recipe defaults to now.
    old = {key: value for key, value in baseline(NORMS).items() if key not in JOINED_LATER}
    for config in trial_configs(old, NORMS, epochs=20):
        settings = {name: getattr(config, name) for name in JOINED_LATER if name not in NETWORK_OPTIONS}
        assert settings == {name: JOINED_LATER[name] for name in settings}, config.norm
        assert network_options(config.arch) == {name: JOINED_LATER[name] for name in NETWORK_OPTIONS}
    assert changes_from_shipped(old, NORMS) == "batch_size=256, whiten_init=False, standardize=False, muon_lr=0"
    assert TrainConfig().batch_size != JOINED_LATER["batch_size"]  # else this test could not fail


@pytest.mark.parametrize("choices", [
    {},  # the shipped recipe
    {"arch": "residual", "flips": "random", "ema_decay": 0.0},  # trial 0: levers our recipe now defaults elsewhere
    {"arch": "separable", "lr_scale_bn": 1.7, "lr_scale_gn": 0.6, "lr_scale_ln": 1.234567, "weight_decay": 1.5e-4,
     "label_smoothing": 0.2, "crop_padding": 4, "crop_scale": 0.5, "crop_ratio": 1.33, "color_jitter": 0.4,
     "flips": "alternate", "ema_decay": 0.995, "dirac_init": True, "schedule": "cosine", "warmup_fraction": 0.1,
     "gn_groups": 8, "batch_size": 128, "whiten_init": True, "zero_residual": True},
])
def test_each_trial_command_trains_exactly_the_trials_config(choices: dict) -> None:
    params = as_drawn(**choices)
    for config in trial_configs(params, NORMS, epochs=8, train_subset=3000):
        shared = {key: value for key, value in params.items()
                  if hasattr(config, key) and key not in ("gn_groups", "arch")}
        assert {key: getattr(config, key) for key in shared} == shared, config.norm
        assert in_space(config.arch) == params["arch"], config.norm
        assert network_options(config.arch) == {name: params.get(name, False) for name in NETWORK_OPTIONS}
        words = shlex.split(command_for(config).replace("PATH", "data"))
        assert words[:3] == ["python", "-m", "training"]
        _, [parsed] = training_args(words[3:])
        assert parsed == config, config.norm
        # As the record prints it for shipping: three seeds from 0, so no --seed beside --seeds.
        words = shlex.split(command_for(config, seeds=3).replace("PATH", "data"))
        _, parsed = training_args(words[3:])
        assert parsed[0] == config and [c.seed for c in parsed] == [0, 1, 2] and "--seed" not in words, config.norm
    assert set(ARCHS) >= {"residual", "residual-silu", "separable"} and ARCHS[0] == "residual"


def test_an_idea_is_queued_with_the_rest_as_shipped_and_one_outside_the_space_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    where = ["--checkpoint-dir", str(tmp_path)]
    for idea, message in [('{"ema_decay": 0.9}', "outside the search space"),
                          ('{"widths": 3}', "not in the search space"), ('{"weight_decay": 1}', "out of the range"),
                          ('[1]', "JSON object"), ("{", "JSON object"),
                          ('{"dirac_init": 1}', "takes values like False"),
                          ('{"dirac_init": true}', "cannot start as identities"),  # TrainConfig's reason
                          ('{"arch": "attention"}', 'as {"arch": "residual-silu", "attention": true}'),
                          ('{"arch": "resnet"}', "not in ("), ('{"gn_groups": 3}', "not in ("),
                          ('{"weight_decay": "0.001"}', "takes values like 0.0002527")]:
        assert main([*where, "--enqueue", '{"flips": "alternate"}', "--enqueue", idea]) == 2, idea
        assert message in capsys.readouterr().err, idea
    assert not optuna.get_all_study_names(storage_in(tmp_path))  # a bad idea queues none of its batch

    assert main([*where, "--enqueue", '{"ema_decay": 0.99, "arch": "late"}', "--enqueue", "{}"]) == 0
    assert "already in the study, not queued again" in capsys.readouterr().out  # {} is the shipped recipe
    waiting = optuna.load_study(study_name=SCREEN, storage=storage_in(tmp_path)).get_trials(
        states=(TrialState.WAITING,))
    # The shipped recipe first, as in every new study; {} is the shipped recipe, so it is there once.
    assert [trial.system_attrs["fixed_params"] for trial in waiting] == [
        baseline(NORMS), as_drawn(ema_decay=0.99, arch="late")]


def test_a_trial_from_before_a_name_joined_the_space_is_the_same_candidate_at_that_names_old_value(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    where = ["--checkpoint-dir", str(tmp_path)]
    assert main([*where, "--enqueue", '{"arch": "late"}']) == 0
    study = optuna.load_study(study_name=SCREEN, storage=storage_in(tmp_path))
    distributions = {}
    for _ in range(2):  # the shipped recipe, queued first in a new study, then the idea
        drawn = study.ask()
        suggest(drawn, NORMS)
        study.tell(drawn, state=TrialState.FAIL)
        distributions |= drawn.distributions
    # Run before the batch size and the whitening joined the space: it names neither, and ran at 256, unwhitened;
    # nor the options of the network, which joined later still.
    old = {key: value for key, value in as_drawn(weight_decay=0.001, standardize=False).items()
           if key not in ("batch_size", "whiten_init", *NETWORK_OPTIONS)}
    study.add_trial(optuna.trial.create_trial(params=old, distributions={k: distributions[k] for k in old},
                                              value=0.8))
    capsys.readouterr()
    idea = '{"weight_decay": 0.001, "whiten_init": false, "standardize": false'
    assert main([*where, "--enqueue", idea + ', "batch_size": 256}', "--enqueue", idea + "}",  # the rest as shipped
                 "--enqueue", '{"arch": "late"}']) == 0
    again, new = "already in the study, not queued again: ", "queued: "
    unstandardized = dict.fromkeys(NETWORK_OPTIONS, False)
    assert capsys.readouterr().out.splitlines() == [
        again + json.dumps({**old, "batch_size": 256, "whiten_init": False, **unstandardized}, sort_keys=True),
        new + json.dumps({**old, "batch_size": 128, "whiten_init": False, **unstandardized}, sort_keys=True),
        again + json.dumps(as_drawn(arch="late"), sort_keys=True),  # queued and not yet run
    ]


# ---- the journal and its heartbeats -------------------------------------------------------------------------

def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_workers_trial_is_failed_and_queued_again_with_its_choices(tmp_path: Path) -> None:
    storage = storage_in(tmp_path, grace_period=600)
    study = open_study(storage, SCREEN, {"epochs": 2})
    trial = study.ask()
    trial.suggest_float("lr_scale_bn", 0.5, 2.0)
    frozen = lambda: storage.get_trial(trial._trial_id)  # noqa: E731

    def beat(worker: str, age: float = 0.0) -> None:
        storage.set_trial_system_attr(trial._trial_id, "heartbeat", {"at": time.time() - age, "worker": worker})

    beat(f"{HOST}:{os.getpid()}")
    assert not storage.is_stale(frozen())  # alive, here
    beat("elsewhere:1")
    assert not storage.is_stale(frozen())  # heard from lately, on another machine
    assert storage.is_stale(frozen(), now=time.time() + 601)  # not heard from within the grace period
    beat("elsewhere:1", age=3600)  # a heartbeat from before the trial started: its predecessor's, when retried
    assert not storage.is_stale(frozen()) and storage.is_stale(frozen(), now=time.time() + 601)
    beat(f"{HOST}:{dead_pid()}")
    assert storage.is_stale(frozen())  # its process is gone from this machine: at once

    optuna.storages.fail_stale_trials(study)
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == failed.number


def test_a_study_refuses_a_worker_with_other_settings(tmp_path: Path) -> None:
    storage = storage_in(tmp_path)
    open_study(storage, SCREEN, {"epochs": 8, "norms": NORMS})
    open_study(storage, SCREEN, {"epochs": 8, "norms": NORMS})  # the same: fine
    with pytest.raises(SearchError, match="epochs: the study has 8, this command 6"):
        open_study(storage, SCREEN, {"epochs": 6, "norms": NORMS})
    lines = (tmp_path / "search" / "journal.log").read_text().splitlines()
    assert sum('"op_code":0' in line for line in lines) == 1  # opening again writes no second creation


# ---- the record -------------------------------------------------------------------------------------------------

def test_the_runs_made_by_hand_fold_into_the_journal_and_come_back_out_unchanged(tmp_path: Path) -> None:
    storage = storage_in(tmp_path)
    shipped = read_trials(SHIPPED_TRIALS)
    by_hand = [record for record in shipped if "study" not in record]
    assert import_trials(storage, SHIPPED_TRIALS) == len(by_hand)
    assert import_trials(storage, SHIPPED_TRIALS) == 0  # already there
    assert trial_records(storage) == by_hand
    recorded = optuna.load_study(study_name=RECORDED, storage=storage).get_trials()
    for trial, record in zip(recorded, by_hand, strict=True):
        accuracies = [model.get("validation_accuracy") for model in record["models"].values()]
        if None in accuracies:
            assert trial.state == TrialState.FAIL and "no validation value" in trial.user_attrs["no_validation"]
        else:
            assert trial.state == TrialState.COMPLETE
            assert trial.value == pytest.approx(sum(accuracies) / len(accuracies))
    assert f"{len(by_hand)} runs" in describe(storage, "journal.log")
    partly = {"command": "python -m training --norm all", "device": "CPU",
              "models": {"bn": {"validation_accuracy": 0.8}, "gn": {"test_accuracy": 0.8}}}
    assert record_run(recorded_study(storage), partly).state == TrialState.FAIL  # no mean of all its models


def test_the_shipped_journal_is_the_source_of_trials_json() -> None:
    storage = HeartbeatJournalStorage(ROOT / "checkpoints" / "search" / "journal.log")
    assert trial_records(storage) == read_trials(SHIPPED_TRIALS)


def test_each_search_trial_of_the_record_has_the_commands_that_train_what_it_trained() -> None:
    storage = HeartbeatJournalStorage(ROOT / "checkpoints" / "search" / "journal.log")
    records = [record for record in trial_records(storage) if record.get("params")]
    settings = optuna.load_study(study_name=SCREEN, storage=storage).user_attrs
    assert any(record["params"].get("flips") == "random" for record in records)  # trial 0: levers not defaulted now
    for record in records:
        for command_line in record["commands"].values():
            _, [parsed] = training_args(shlex.split(command_line.replace("PATH", "data"))[3:])
            params = {**JOINED_LATER, **record["params"]}  # the names that joined the space after it ran
            shared = [key for key in params
                      if hasattr(parsed, key) and key not in ("gn_groups", "weight_decay", "arch")]
            assert {key: getattr(parsed, key) for key in shared} == {key: params[key] for key in shared}, record
            assert in_space(parsed.arch) == params["arch"], record  # the network, with the options it drew
            assert network_options(parsed.arch) == {name: params[name] for name in NETWORK_OPTIONS}, record
            assert parsed.weight_decay == pytest.approx(params["weight_decay"], rel=1e-3), record
            assert parsed.validation and parsed.epochs in (settings["epochs"], 20), record


# ---- a trial's training never sees the test set --------------------------------------------------------------------

def test_a_trial_trains_on_the_45000_and_evaluates_on_the_5000_validation_images_only(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(550)  # 500 per class for the validation split, 50 to train on
    fake = Split(torch.randint(0, 256, (5500, 3, 32, 32), dtype=torch.uint8, generator=generator), labels)
    loaded, splits = [], []

    def load_split(root: Path, train: bool, download: bool = False) -> Split:
        loaded.append(train)
        return fake

    real_train = runner.train

    def train(config, train_split, eval_split, *args, **kwargs):
        splits.append((len(train_split), len(eval_split)))
        return real_train(config, train_split, eval_split, *args, **kwargs)

    monkeypatch.setattr(runner, "load_split", load_split)
    monkeypatch.setattr(runner, "train", train)
    [config] = trial_configs(baseline(["bn"]), ["bn"], epochs=1, train_subset=256)
    messages: queue.Queue = queue.Queue()
    runner.train_norm(config, tmp_path, torch.device("cpu"), tmp_path / "state", torch.get_num_threads(), messages,
                      models_dir=tmp_path / "models")
    kind, norm, record = messages.get_nowait()
    assert (kind, norm) == ("epoch", "bn") and "val_accuracy" in record and "test_accuracy" not in record
    assert messages.get_nowait() == ("done", "bn", None)
    assert loaded == [True] and splits == [(500, 5000)]
    # A confirmation run keeps its model, for the photos; it says it was never tested.
    _, metadata = load_checkpoint(CheckpointFolder(tmp_path / "models").weights("bn"))
    assert metadata["test_accuracy"] is None and metadata["validation_accuracy"] == record["val_accuracy"]
    assert metadata["train_images"] == 256 and metadata["epochs"] == 1


# ---- a study end to end: screened, pruned, killed and resumed ------------------------------------------------------

def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:.0f} s for {what}")
        time.sleep(1)


def test_a_study_screens_prunes_and_continues_a_killed_workers_trial(cifar_dir: Path, tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    checkpoints, states = tmp_path / "checkpoints", tmp_path / "runs"
    common = ["--checkpoint-dir", str(checkpoints), "--state-dir", str(states), "--data-dir", str(cifar_dir),
              "--norms", "bn", "--epochs", "3", "--train-subset", "3000", "--prune-startup", "1",
              "--prune-warmup", "2", "--trials", "1"]
    storage = HeartbeatJournalStorage(checkpoints / "search" / "journal.log")

    def study() -> optuna.Study:
        return optuna.load_study(study_name=SCREEN, storage=HeartbeatJournalStorage(storage.path))

    assert main(common) == 0  # a new study's first trial: the shipped recipe
    [first] = study().get_trials()
    assert first.state == TrialState.COMPLETE and first.params == baseline(["bn"])

    # A learning rate ten thousand times too small, for every weight (SGD: Muon would still turn the filters),
    # learns nothing: pruned after epoch 2 (of 3) against the first.
    study().enqueue_trial({**baseline(["bn"]), "lr_scale_bn": 1e-4, "muon_lr": 0.0})
    assert main(common) == 0
    pruned = study().get_trials()[1]
    assert pruned.state == TrialState.PRUNED and sorted(pruned.intermediate_values) == [1, 2]

    # A worker killed after its trial's first epoch, with its training processes. (These workers prune nothing:
    # pruning is each worker's own setting, and this trial is to run to its end.)
    common += ["--prune-startup", "100"]
    study().enqueue_trial({**baseline(["bn"]), "weight_decay": 0.001})
    with open(tmp_path / "killed.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "training.search", *common], cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: len(study().get_trials()) == 3 and 1 in study().get_trials()[2].intermediate_values, 600,
                 "the third trial's first epoch")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert study().get_trials()[2].state == TrialState.RUNNING
    capfd.readouterr()

    # The next worker fails the killed trial, queues it again and continues it from its saved epoch.
    assert main(common) == 0
    output = capfd.readouterr().out
    trials = study().get_trials()
    killed, retried = trials[2], trials[3]
    assert killed.state == TrialState.FAIL and retried.state == TrialState.COMPLETE
    assert retried.params == killed.params and retried.system_attrs["failed_trial"] == 2
    assert f"Resuming {DEFAULT_ARCH}/bn" in output and "after epoch 1" in output
    assert retried.intermediate_values[1] == killed.intermediate_values[1]
    assert sorted(retried.intermediate_values) == [1, 2, 3]

    records = [record for record in read_trials(checkpoints / "trials.json") if record.get("study") == SCREEN]
    assert [record["state"] for record in records] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
    assert records[3]["retry_of"] == 2 and records[3]["models"]["bn"]["epochs_trained"] == 3
    assert all("test_accuracy" not in model for record in records for model in record["models"].values())
    assert "4 trials: 2 complete, 1 pruned, 1 failed" in describe(storage, "journal")
    assert not any((states / SCREEN).iterdir())  # the finished trials' states are gone
    saved = json.loads((checkpoints / "trials.json").read_text())
    assert saved["trials"] == trial_records(storage)


def test_a_worker_stopped_with_kill_queues_its_trial_again_at_once(cifar_dir: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    storage = HeartbeatJournalStorage(checkpoints / "search" / "journal.log")
    command = [sys.executable, "-m", "training.search", "--checkpoint-dir", str(checkpoints), "--state-dir",
               str(tmp_path / "runs"), "--data-dir", str(cifar_dir), "--norms", "bn", "--epochs", "3",
               "--train-subset", "3000"]
    # In the background, as `nohup ... &` starts it: SIGINT ignored, so SIGTERM is the way to stop it.
    worker = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))

    def first_epoch_reported() -> bool:
        journal = HeartbeatJournalStorage(storage.path)
        if SCREEN not in optuna.get_all_study_names(journal):
            return False
        return any(1 in trial.intermediate_values
                   for trial in optuna.load_study(study_name=SCREEN, storage=journal).get_trials())

    try:
        wait_for(first_epoch_reported, 600, "the first epoch")
        worker.terminate()
        _, errors = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 130 and "queued again" in errors
    assert "leaked" not in errors  # the stopped training processes leave nothing for the resource tracker
    stopped, queued = optuna.load_study(study_name=SCREEN, storage=storage).get_trials()
    assert stopped.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == stopped.params and queued.system_attrs["failed_trial"] == stopped.number
    # The record keeps the stopped trial's retry, waiting to continue, which a queued idea is not yet.
    records = {record["trial"]: record for record in trial_records(storage)}
    assert records[queued.number]["state"] == "WAITING" and records[queued.number]["retry_of"] == stopped.number


def test_the_best_candidate_is_confirmed_over_seeds_and_its_models_kept(cifar_dir: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    checkpoints, states = tmp_path / "checkpoints", tmp_path / "runs"
    common = ["--checkpoint-dir", str(checkpoints), "--state-dir", str(states), "--data-dir", str(cifar_dir),
              "--norms", "bn", "--epochs", "1", "--train-subset", "500"]
    assert main([*common, "--trials", "1"]) == 0
    assert main([*common, "--confirm", "1", "--seeds", "2", "--confirm-epochs", "1"]) == 0
    storage = HeartbeatJournalStorage(checkpoints / "search" / "journal.log")
    confirmed = optuna.load_study(study_name=CONFIRM, storage=storage).get_trials()
    assert [(trial.state, trial.params["seed"]) for trial in confirmed] == [(TrialState.COMPLETE, 0),
                                                                          (TrialState.COMPLETE, 1)]
    for trial in confirmed:  # each run's model, to be measured on photos
        _, metadata = load_checkpoint(states / "models" / f"{CONFIRM}-{trial.number}" / "bn.safetensors")
        assert metadata["seed"] == trial.params["seed"] and metadata["test_accuracy"] is None
        assert metadata["validation_accuracy"] == pytest.approx(trial.value)
    assert main([*common, "--confirm", "1", "--seeds", "2", "--confirm-epochs", "1"]) == 0  # nothing left to do
    assert len(optuna.load_study(study_name=CONFIRM, storage=storage).get_trials()) == 2
    # A screened trial named by its number: its third seed; a trial that did not complete is refused.
    assert main([*common, "--confirm-trial", "0", "--seeds", "3", "--confirm-epochs", "1"]) == 0
    third = optuna.load_study(study_name=CONFIRM, storage=storage).get_trials()[2]
    assert (third.state, third.params["seed"], third.user_attrs["screen_trial"]) == (TrialState.COMPLETE, 2, 0)
    assert main([*common, "--confirm-trial", "1"]) == 2
    assert "screening trial 1 has not completed" in capsys.readouterr().err


def test_without_optuna_the_search_says_what_to_install() -> None:
    """The app's requirements leave Optuna out; the search (and --record-trial) name the file that has it."""
    for code in ("import runpy; runpy.run_module('training.search', run_name='__main__')",
                 "from training.__main__ import main; main(['--record-trial', '--norm', 'bn', '--epochs', '1'])"):
        hidden = f"import sys; sys.modules['optuna'] = None; {code}"
        done = subprocess.run([sys.executable, "-c", hidden], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "pip install -r requirements-train.txt" in done.stderr
    assert "optuna" not in (ROOT / "requirements.txt").read_text()
    assert "optuna==" in (ROOT / "requirements-train.txt").read_text()
