"""The Hugging Face Space's file set (webapp.deploy): everything the app reads at run time, and nothing else.

A copy of just those files runs `python app.py` on its own (its own checkpoints/, no
CHECKPOINT_DIR, nothing imported from the checkout) and serves every tab; `--dry-run` lists
them without the network. Run with -s to see the set's size.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from artifacts.results import read_results
from model import NORMS
from tests.app_server import ROOT, Server, app_server
from tests.conftest import CAM_SHAPE, read_png
from webapp.deploy import megabytes, space_files, space_patterns, total_bytes
from webapp.preprocess import prepare

LEFT_HOME = ("tests/", "benchmarks/", "training/", "runs/", "data/", "logs/", ".ci/", "test-artifacts/", ".git/")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = space_files(ROOT)
    copy = tmp_path_factory.mktemp("space")
    for name in files:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    print(f"\nthe Space's files: {len(files)}, {megabytes(total_bytes(copy, files))} in all")
    return copy


@pytest.fixture(scope="module")
def server(space: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("space-server")
    # Only the copy: no checkpoint folder named from outside, no module path into the checkout, no network.
    env = {"CHECKPOINT_DIR": None, "PYTHONPATH": None, "GRADIO_TEMP_DIR": str(folder / "gradio"),
           "HF_HUB_OFFLINE": "1"}
    with app_server(folder / "app.log", env=env, cwd=space) as running:
        yield running


def page_config(server: Server) -> dict:
    with urllib.request.urlopen(f"{server.url}/config", timeout=60) as response:
        return json.load(response)


def test_the_copy_classifies_and_explains(server: Server, space: Path) -> None:
    api = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
    dog = space / "checkpoints" / "examples" / "dog.png"
    result = api.predict(handle_file(str(dog)), "crop", 3, api_name="/classify")
    assert [label["label"] for label in result[1:4]] == ["dog"] * 3
    assert np.array_equal(read_png(result[0]), prepare(dog)[0])
    cams = api.predict(4, 0.5, -1, api_name="/gradcam")
    assert [read_png(cam).shape for cam in cams[:3]] == [CAM_SHAPE] * 3
    assert cams[3].count("looks for “dog”") == 3


def test_the_copy_shows_every_tab_with_its_content(server: Server, space: Path) -> None:
    config = page_config(server)
    text = json.dumps(config, ensure_ascii=False)
    tabs = {block["props"].get("label") for block in config["components"] if block.get("type") == "tabitem"}
    assert {"Classify", "Mistakes", "Training", "Lab", "Inside the norms"} <= tabs
    # Expected from the checkout's files; the page shows them only if the copy had them.
    results = read_results(ROOT / "checkpoints" / "results.json")
    with np.load(ROOT / "checkpoints" / "mistakes.npz") as mistakes:
        count = len(mistakes["labels"])
    assert f"{count:,}" in text  # the Mistakes tab read its file
    assert all(f"{100 * results[norm]['test_accuracy']:.2f}%" in text for norm in NORMS)
    if (space / "checkpoints" / "reference" / "results.json").is_file():
        assert "reference, our recipe" in text.lower()  # the reference network's column
    # What the page says when a file it reads is missing or damaged.
    for problem in ("unavailable", "Not measured yet", "not in the expected form", "No mistakes to show"):
        assert problem not in text, problem
    figures = [block["props"]["value"] for block in config["components"]
               if block.get("type") == "image" and isinstance(block["props"].get("value"), dict)]
    # The curves, three confusion matrices, five lab plots, and the example the Inside tab starts with.
    assert len(figures) == 4 + 5 + 1
    for figure in figures:
        with urllib.request.urlopen(figure["url"], timeout=60) as response:
            assert response.status == 200 and response.read(8) == b"\x89PNG\r\n\x1a\n", figure["url"]


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webapp.deploy", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_dry_run_lists_the_app_and_its_weights_and_nothing_else() -> None:
    done = deploy("someone/norm-lab", "--dry-run")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[-1] for line in done.stdout.splitlines()[:-1]]
    assert listed == space_files(ROOT)
    assert {"app.py", "requirements.txt", "README.md", ".gitattributes"} <= set(listed)
    assert {f"checkpoints/{norm}.safetensors" for norm in NORMS} <= set(listed)
    assert not [name for name in listed if name.startswith(LEFT_HOME)]
    # The reference network's results table comes along; its weights and plots, and the other seeds, stay home.
    assert not [name for name in listed if name.startswith("checkpoints/seeds/")]
    reference = {name for name in listed if name.startswith(("checkpoints/reference/", "checkpoints/grid/"))}
    assert reference <= {"checkpoints/reference/results.json", "checkpoints/grid/reference-published/results.json"}
    assert not [name for name in listed if name.endswith(("_history.json", "_misclassified.png", ".pyc"))]
    assert done.stdout.splitlines()[-1].startswith(f"{len(listed)} files, ")
    assert "huggingface.co/spaces/someone/norm-lab" in done.stdout.splitlines()[-1]
    assert len(space_patterns()) == len(set(space_patterns()))


@pytest.mark.parametrize("space_id", ["norm-lab", "a/b/c", "someone/", "some one/lab", "x!/lab"])
def test_a_malformed_space_id_is_one_line(space_id: str) -> None:
    done = deploy(space_id, "--dry-run")
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "OWNER/SPACE" in done.stderr


def test_no_token_says_how_to_log_in(tmp_path: Path) -> None:
    # An empty Hugging Face home and no HF_TOKEN: the command stops before any network call.
    env = {"HF_HOME": str(tmp_path), "HF_TOKEN": "", "HF_TOKEN_PATH": str(tmp_path / "token"), "HF_HUB_OFFLINE": "1"}
    done = deploy("someone/norm-lab", env=env)
    assert done.returncode != 0 and done.stderr.count("\n") == 1
    assert "hf auth login" in done.stderr and "HF_TOKEN" in done.stderr
