"""The models as Hub model repositories (model.hub, artifacts.model_card, training.publish, app.py --models).

No network: repositories are local folders in the Hub layout, as `python -m training.publish
--dry-run --output-dir` writes them, and every command runs with HF_HUB_OFFLINE=1.
"""

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file

from artifacts.folder import CheckpointFolder
from artifacts.model_card import DATASET_ID, model_card
from artifacts.photos import write_photo_results
from artifacts.results import read_over_seeds, read_results
from artifacts.weights import load_checkpoint, read_metadata
from model import ARCHITECTURES, NORMS, pixels_to_input
from model.hub import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, HubModelError, NormLabNet
from tests.app_server import ROOT, app_server
from training.publish import main as publish_main
from webapp.inference import load_bank

PREFIX = "someone/norm-lab"
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def suffixes(folder: CheckpointFolder) -> list[str]:
    """The models publish takes from ``folder``: its norms, and the reference network's where shipped."""
    return [*NORMS, *(f"reference-{norm}" for norm in NORMS if folder.reference.weights(norm).is_file())]


def publish(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.publish", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **OFFLINE, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def published(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(the dry run's output, the folders it kept) for the shipped checkpoints."""
    output = tmp_path_factory.mktemp("hub")
    done = publish(PREFIX, "--dry-run", "--checkpoint-dir", str(checkpoint_dir), "--output-dir", str(output))
    assert done.returncode == 0, done.stderr
    return done.stdout, output


def trained_like(arch: str, norm: str) -> NormLabNet:
    """A network whose every weight and running statistic differs from a fresh one's."""
    torch.manual_seed(0)
    model = NormLabNet(arch, norm, metadata={"arch": arch, "norm": norm, "note": "round trip"})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        model.train()
        model(torch.randn(16, 3, 32, 32))  # BatchNorm's running statistics move
    return model.eval()


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_save_pretrained_then_from_pretrained_gives_identical_logits(arch: str, norm: str, tmp_path: Path) -> None:
    model = trained_like(arch, norm)
    model.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    groups = ARCHITECTURES[arch].gn_groups if norm == "gn" else None
    assert config == {"arch": arch, "norm": norm, "gn_groups": groups, "metadata": model.metadata}
    # The weights file holds the network's own tensor names, as a checkpoint file does.
    assert set(load_file(tmp_path / WEIGHTS_FILE)) == set(model.network.state_dict())

    loaded = NormLabNet.from_pretrained(tmp_path)
    x = torch.randn(8, 3, 32, 32)
    assert not loaded.training and (loaded.arch, loaded.norm, loaded.gn_groups) == (arch, norm, groups)
    assert torch.equal(loaded(x), model(x))
    assert loaded.metadata == model.metadata


def test_a_group_count_other_than_the_default_comes_back(tmp_path: Path) -> None:
    model = NormLabNet("residual", "gn", 8)
    model.save_pretrained(tmp_path)
    assert NormLabNet.from_pretrained(tmp_path).network.features[0][2].num_groups == 8


def test_the_published_models_answer_as_the_shipped_checkpoints(published: tuple[str, Path],
                                                                checkpoint_dir: Path) -> None:
    _, output = published
    folder = CheckpointFolder(checkpoint_dir)
    pixels = np.stack([np.array(Image.open(path).convert("RGB")) for path in folder.example_files()])
    for suffix in suffixes(folder):
        source = folder.reference if suffix.startswith("reference-") else folder
        network, metadata = load_checkpoint(source.weights(suffix.split("-")[-1]))
        loaded = NormLabNet.from_pretrained(output / suffix)
        assert loaded.metadata == metadata, suffix
        with torch.inference_mode():
            expected = network(pixels_to_input(pixels))
            assert torch.equal(loaded(pixels_to_input(pixels)), expected), suffix
        assert np.array_equal(loaded.predict(pixels), expected.softmax(dim=1).numpy()), suffix


def write_config(folder: Path, config: object) -> None:
    (folder / CONFIG_FILE).write_text(config if isinstance(config, str) else json.dumps(config))


def test_a_repository_made_for_another_architecture_says_so(tmp_path: Path) -> None:
    NormLabNet("residual", "bn").save_pretrained(tmp_path)
    write_config(tmp_path, {"arch": "vit-tiny", "norm": "bn", "gn_groups": None, "metadata": {}})
    with pytest.raises(HubModelError, match="architecture 'vit-tiny'.*knows residual, reference"):
        NormLabNet.from_pretrained(tmp_path)
    write_config(tmp_path, {"arch": "residual", "norm": "rmsnorm"})
    with pytest.raises(HubModelError, match="norm 'rmsnorm'"):
        NormLabNet.from_pretrained(tmp_path)


@pytest.mark.parametrize(("config", "message"), [
    ("{not json", "not readable JSON"),
    ("[1, 2]", "does not name an architecture and a norm"),
    ("null", "does not name an architecture and a norm"),
    ({"norm": "bn"}, "does not name an architecture and a norm"),
    ({"arch": "residual", "norm": "gn", "gn_groups": "four"}, "not a whole number"),
    ({"arch": "residual", "norm": "gn", "gn_groups": 5}, "does not describe a network: 5 groups"),
    ({"arch": "residual", "norm": "bn", "metadata": [1]}, "metadata that is not an object"),
])
def test_a_broken_config_is_one_clear_error(config: object, message: str, tmp_path: Path) -> None:
    NormLabNet("residual", "gn").save_pretrained(tmp_path)
    write_config(tmp_path, config)
    with pytest.raises(HubModelError, match=message):
        NormLabNet.from_pretrained(tmp_path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    NormLabNet("residual", "bn").save_pretrained(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(HubModelError, match="has no config.json"):
        NormLabNet.from_pretrained(tmp_path)
    NormLabNet("residual", "bn").save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(HubModelError, match="model.safetensors .* not a readable safetensors file"):
        NormLabNet.from_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(HubModelError, match="has no model.safetensors"):
        NormLabNet.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    residual, reference = tmp_path / "residual", tmp_path / "reference"
    NormLabNet("residual", "bn").save_pretrained(residual)
    NormLabNet("reference", "bn").save_pretrained(reference)
    shutil.copy(reference / WEIGHTS_FILE, residual / WEIGHTS_FILE)
    with pytest.raises(HubModelError, match="do not fit the residual/bn network"):
        NormLabNet.from_pretrained(residual)
    # Same tensor names and shapes, but the config claims another parameter count: another version.
    write_config(reference, {"arch": "reference", "norm": "bn", "metadata": {"parameters": 12345}})
    with pytest.raises(HubModelError, match="says 12345 parameters"):
        NormLabNet.from_pretrained(reference)


def test_dry_run_lists_exactly_the_expected_files(published: tuple[str, Path], checkpoint_dir: Path) -> None:
    stdout, output = published
    lines = stdout.splitlines()
    expected = {f"{PREFIX}-{suffix}/{name}" for suffix in suffixes(CheckpointFolder(checkpoint_dir))
                for name in (CARD_FILE, CONFIG_FILE, WEIGHTS_FILE)}
    listed = [line.split()[-1] for line in lines[:-1]]
    assert sorted(listed) == sorted(expected) and len(listed) == len(expected)
    assert lines[-1].startswith(f"{len(expected)} files in {len(expected) // 3} repositories, ")
    # Each size is the file's, and the kept folders hold exactly those files.
    for line in lines[:-1]:
        size, unit, name = line.split()
        path = output / name.removeprefix(f"{PREFIX}-")
        assert float(size) == round(path.stat().st_size / (1e6 if unit == "MB" else 1e3), 1), name
    assert sorted(str(path.relative_to(output)) for path in output.rglob("*") if path.is_file()) == sorted(
        name.removeprefix(f"{PREFIX}-") for name in expected)


@pytest.mark.parametrize("prefix", ["norm-lab", "a/b/c", "someone/", "x!/lab", "someone/" + "n" * 90, "longest"])
def test_a_malformed_prefix_is_one_line(prefix: str, checkpoint_dir: Path, capsys: pytest.CaptureFixture) -> None:
    if prefix == "longest":  # a valid id itself, but one character too long once the longest suffix is added
        longest = max(suffixes(CheckpointFolder(checkpoint_dir)), key=len)
        prefix = "someone/" + "n" * (96 - len("someone/") - len(f"-{longest}") + 1)
    with pytest.raises(SystemExit) as stopped:
        publish_main([prefix, "--dry-run", "--checkpoint-dir", str(checkpoint_dir)])
    message = str(stopped.value.code)
    assert "\n" not in message and "OWNER/PREFIX" in message and capsys.readouterr().out == ""


def test_no_token_says_how_to_log_in(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path), "HF_TOKEN": "", "HF_TOKEN_PATH": str(tmp_path / "token")}
    done = publish(PREFIX, env=env)
    assert done.returncode != 0 and done.stderr.count("\n") == 1
    assert "hf auth login" in done.stderr and "HF_TOKEN" in done.stderr


def test_each_card_parses_as_hub_metadata_and_its_numbers_equal_results_json(published: tuple[str, Path],
                                                                            checkpoint_dir: Path) -> None:
    _, output = published
    folder = CheckpointFolder(checkpoint_dir)
    for suffix in suffixes(folder):
        source = folder.reference if suffix.startswith("reference-") else folder
        norm = suffix.split("-")[-1]
        shipped, (over_seeds, _) = read_results(source.results)[norm], read_over_seeds(source.results)
        card = ModelCard.load(output / suffix / CARD_FILE)
        data = card.data
        assert data.model_name == f"norm-lab-{suffix}" and data.datasets == [DATASET_ID]
        assert (data.library_name, data.license, data.pipeline_tag) == ("pytorch", "mit", "image-classification")
        assert {"pytorch_model_hub_mixin", NORMS[norm].title.lower()} <= set(data.tags)
        seed0, *rest = data.eval_results
        assert (seed0.task_type, seed0.dataset_type, seed0.dataset_split, seed0.metric_type) == (
            "image-classification", DATASET_ID, "test", "accuracy")
        assert seed0.metric_value == round(100 * shipped["test_accuracy"], 2)
        test = over_seeds[norm]["test_accuracy"]
        if test["n"] > 1:
            (mean,) = rest
            assert mean.metric_value == round(100 * test["mean"], 2)
            assert mean.metric_args["std"] == round(100 * test["std"], 2)
            assert mean.metric_args["interval_95"] == [round(100 * test["low"], 2), round(100 * test["high"], 2)]
            assert mean.metric_args["seeds"] == over_seeds[norm]["seeds"]
            assert f"{round(100 * test['mean'], 2)} ± {round(100 * test['std'], 2)}%" in card.text
        else:
            assert rest == []
        text = card.text
        assert f"{shipped['parameters']:,} parameters" in text
        assert f'NormLabNet.from_pretrained("{PREFIX}-{suffix}")' in text
        assert "32 × 32" in text and all(name in text for name in shipped["classes"])
        lab_shown = (source.lab.results("coupling")).is_file()
        assert ("Measured by `python -m training.lab coupling`" in text) == lab_shown


def test_the_card_command_trains_the_same_settings(published: tuple[str, Path], checkpoint_dir: Path) -> None:
    from training.__main__ import parse_args

    _, output = published
    folder = CheckpointFolder(checkpoint_dir)
    for suffix in suffixes(folder):
        source = folder.reference if suffix.startswith("reference-") else folder
        metadata = read_metadata(source.weights(suffix.split("-")[-1]))
        text = (output / suffix / CARD_FILE).read_text()
        command = next(line for line in text.splitlines() if line.startswith("python -m training "))
        words = shlex.split(command)
        _, (config,) = parse_args(words[3:])
        for key in ("arch", "norm", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "crop_padding",
                    "seed"):
            assert getattr(config, key) == metadata[key], (suffix, key)
            assert f"--{key.replace('_', '-')}" in words, (suffix, key)  # spelled out: defaults may change
        # Every lever too, those at a value the command line no longer defaults to included.
        assert config.describes(metadata), suffix


@pytest.fixture
def small_folder(checkpoint_dir: Path, tmp_path: Path) -> CheckpointFolder:
    """A checkpoint folder with the BatchNorm model and results.json only."""
    shutil.copy(checkpoint_dir / "bn.safetensors", tmp_path / "bn.safetensors")
    shutil.copy(checkpoint_dir / "results.json", tmp_path / "results.json")
    return CheckpointFolder(tmp_path)


def card_text(folder: CheckpointFolder) -> str:
    return model_card(folder, "bn", f"{PREFIX}-bn", "the recipe", "python -m training --norm bn").text


def test_the_card_says_when_photos_were_not_measured_and_shows_them_when_they_were(
        small_folder: CheckpointFolder) -> None:
    assert "Accuracy on real photos was **not measured**" in card_text(small_folder)
    per_class = {"airplane": {"correct": 3, "total": 4}, "cat": {"correct": 1, "total": 4}}
    write_photo_results(small_folder.photos, {
        "command": "python benchmarks/photos.py PATH", "photos": 8, "classes": list(per_class),
        "models": {"bn": {"correct": 4, "total": 8, "accuracy": 0.5, "per_class": per_class}}})
    text = card_text(small_folder)
    assert "not measured" not in text.split("## Limits")[0]
    assert "**4 of 8** were classified correctly (50.0%)" in text
    assert "| airplane | 3 / 4 |" in text and "| cat | 1 / 4 |" in text
    assert "python benchmarks/photos.py PATH" in text


def test_the_card_leaves_out_what_the_folder_lacks_or_does_not_match(small_folder: CheckpointFolder) -> None:
    text = card_text(small_folder)
    assert text.count("Not measured for this network.") == 4  # no lab/ folder here
    results = json.loads(small_folder.results.read_text())
    over_seeds = f"Over {len(results['over_seeds']['bn']['runs'])} seeds"
    assert over_seeds in text
    results["models"]["bn"]["test_accuracy"] = 0.5  # results.json of another checkpoint
    small_folder.results.write_text(json.dumps(results))
    text = card_text(small_folder)
    assert "describes another checkpoint" in text and over_seeds not in text
    small_folder.results.unlink()
    card = model_card(small_folder, "bn", f"{PREFIX}-bn", "the recipe", "python -m training --norm bn")
    assert "results.json is absent" in card.text and len(card.data.eval_results) == 1


def test_a_broken_model_is_reported_while_the_others_serve(published: tuple[str, Path], tmp_path: Path) -> None:
    _, output = published
    models = tmp_path / "models"
    shutil.copytree(output, models)
    write_config(models / "gn", {"arch": "vit-tiny", "norm": "gn"})
    shutil.rmtree(models / "ln")
    bank = load_bank(tmp_path / "no-checkpoints", str(models))
    assert bank.norms == ("bn",)
    assert "vit-tiny" in bank.problems["gn"] and "no folder" in bank.problems["ln"]
    assert not math.isnan(bank.predict(np.zeros((32, 32, 3), np.uint8)).probabilities["bn"].sum())


def test_the_app_serves_the_models_of_a_local_folder_in_the_hub_layout(published: tuple[str, Path],
                                                                      checkpoint_dir: Path, tmp_path: Path) -> None:
    _, output = published
    # A checkpoint folder with the examples only: no models, results, mistakes or lab files.
    only_examples = tmp_path / "checkpoints"
    shutil.copytree(checkpoint_dir / "examples", only_examples / "examples")
    args = ("--models", str(output), "--checkpoint-dir", str(only_examples))
    with app_server(tmp_path / "app.log", args=args, env={**OFFLINE, "CHECKPOINT_DIR": None}) as server:
        api = Client(server.url, verbose=False, download_files=False, analytics_enabled=False)
        for name in ("airplane", "frog", "truck"):
            result = api.predict(handle_file(str(only_examples / "examples" / f"{name}.png")), "crop", 3,
                                 api_name="/classify")
            assert [label["label"] for label in result[1:4]] == [name] * 3, name
        with urllib.request.urlopen(f"{server.url}/config", timeout=60) as response:
            page = response.read().decode()
    assert "unavailable" not in page
    assert "No mistakes to show" in page and "Not measured yet" in page  # the other tabs, without their files


def test_models_come_from_the_flag_or_the_environment(published: tuple[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    _, output = published
    monkeypatch.delenv("HUB_MODELS", raising=False)
    assert app.parse_args([]).models is None  # the checkpoint folder's own models: no network
    monkeypatch.setenv("HUB_MODELS", PREFIX)  # what a Space sets
    assert app.parse_args([]).models == PREFIX
    assert app.parse_args(["--models", str(output)]).models == str(output)
    with pytest.raises(SystemExit):
        app.parse_args(["--models", "not-a-folder-nor-a-prefix"])
