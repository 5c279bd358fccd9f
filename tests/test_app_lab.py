"""The Lab tab's computations without a browser: live demos and the measured-results sections."""

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from artifacts.folder import LabFolder
from artifacts.lab import EXPERIMENTS
from model import NORMS
from tests.conftest import CHECKPOINTS, read_png
from webapp.inference import load_bank
from webapp.lab import UPLOADED, LabDemo, read_lab, section_markdown
from webapp.layout import _example_pixels


@pytest.fixture(scope="module")
def demo() -> LabDemo:
    bank = load_bank(CHECKPOINTS)
    if bank.problems:
        pytest.fail(f"the shipped models did not load: {bank.problems}")
    examples = _example_pixels(sorted((CHECKPOINTS / "examples").glob("*.png")))
    generator = np.random.default_rng(0)
    pool = generator.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    return LabDemo(bank, examples, pool)


def test_severity_zero_shows_the_clean_image_and_prediction(demo: LabDemo) -> None:
    shown = demo.corrupted("ship", None, "blur", 0)
    image, chart, note = read_png(shown["corrupted"]), shown["corrupted_chart"], shown["corrupted_note"]
    assert image.shape == (256, 256, 3)
    assert np.array_equal(image[::8, ::8], demo.examples["ship"])
    assert "no corruption" in note and note.count("keeps") == 3 and "<svg" in chart


def test_scaling_towards_the_mean_moves_batchnorm_but_not_the_per_sample_norms(demo: LabDemo) -> None:
    pixels = demo.examples["ship"]
    clean = demo.bank.predict(pixels).probabilities
    image = read_png(demo.corrupted("ship", None, "scaling", 4)["corrupted"])
    scaled = demo.bank.predict(image[::8, ::8]).probabilities
    ship = demo.bank.classes.index("ship")
    for norm in ("gn", "ln"):  # invariant up to the rounding of pixels to integers
        assert abs(scaled[norm][ship] - clean[norm][ship]) < 0.05, norm
    assert abs(scaled["bn"][ship] - clean["bn"][ship]) > 0.05


def test_companions_move_only_batchnorm_in_train_mode(demo: LabDemo) -> None:
    shown = demo.companions("cat", None, 4, 0)
    chart, note = shown["companion_plot"], shown["companion_note"]
    assert "<svg" in chart and "BatchNorm, eval mode" in chart
    ranges = {}
    for line in note.split("\n"):
        for norm, title in (("bn", "BatchNorm"), ("gn", "GroupNorm"), ("ln", "LayerNorm")):
            if line.startswith(f"**{title}**"):
                low, high = line.split(": ", 1)[1].split(",")[0].split("–")
                ranges[norm] = (float(low.rstrip("%")), float(high.rstrip("%")))
    assert set(ranges) == set(NORMS)
    assert ranges["gn"][0] == ranges["gn"][1] and ranges["ln"][0] == ranges["ln"][1]
    assert ranges["bn"][1] - ranges["bn"][0] > 0.5  # percentage points, with random-noise companions
    assert demo.companions("cat", None, 4, 1) != shown  # new draw, new companions


def test_uploaded_image_is_used_and_missing_upload_is_a_hint(demo: LabDemo) -> None:
    assert demo.corrupted(UPLOADED, None, "jpeg", 3)["corrupted"] is None
    assert "Upload an image" in demo.companions(UPLOADED, None, 8, 0)["companion_note"]
    image = read_png(demo.corrupted(UPLOADED, demo.examples["frog"].tolist(), "brightness", 0)["corrupted"])
    assert np.array_equal(image[::8, ::8], demo.examples["frog"])


@pytest.mark.parametrize("call", [
    lambda d: d.corrupted("ship", None, "fog", 1),
    lambda d: d.corrupted("ship", None, "blur", "very"),
    lambda d: d.corrupted("no-such-image", None, "blur", 1),
    lambda d: d.companions("ship", None, "many", 0),
])
def test_bad_demo_inputs_are_clear_errors(demo: LabDemo, call) -> None:
    with pytest.raises(gr.Error):
        call(demo)


def test_out_of_range_controls_are_clamped(demo: LabDemo) -> None:
    assert "severity 5" in demo.corrupted("ship", None, "contrast", 9)["corrupted_note"]
    assert "batches of 64" in demo.companions("ship", None, 1000, 0)["companion_note"]


def test_measured_sections_read_results_and_survive_bad_files(tmp_path: Path) -> None:
    shipped = read_lab(LabFolder(CHECKPOINTS / "lab"))
    for name in EXPERIMENTS:
        text = section_markdown(name, shipped.get(name))
        assert f"python -m training.lab {name}" in text
        if name in shipped:
            assert "| --- |" in text  # a table
    (tmp_path / "coupling.json").write_text("{not json")
    (tmp_path / "cost.json").write_text(json.dumps({"experiment": "cost", "setup": {}, "results": {"32": 5}}))
    found = read_lab(LabFolder(tmp_path))
    assert "coupling" not in found
    assert "not in the expected form" in section_markdown("cost", found["cost"])
    assert section_markdown("robustness", None).startswith("Not measured yet")
