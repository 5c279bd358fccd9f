"""The app's computations without a browser: inference, Grad-CAM, the mistakes filters, charts, handlers.

Runs on the shipped checkpoints (or the folder named by CHECKPOINT_DIR).
"""

import dataclasses
import shutil
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from artifacts.folder import CheckpointFolder
from artifacts.mistakes import MistakesError, load_mistakes
from artifacts.results import write_results
from model import NORMS, standardize
from tests.conftest import CAM_SHAPE, read_png
from webapp.callbacks import CAM_NOTE, CAMS, CLASSIFY_OUTPUTS, LABELS, PREVIEW, TOP_CLASS, Handlers, image_html
from webapp.charts import probability_chart
from webapp.gradcam import feature_layers, grad_cam, overlay
from webapp.inference import ModelBank, load_bank
from webapp.mistakes import ALL_WRONG, ANY, ONLY_THIS, agreement_choices, caption, select
from webapp.preprocess import enlarge, prepare
from webapp.training_report import (
    REFERENCE,
    SEEDS_HEADER,
    TABLE_HEADERS,
    differences_markdown,
    explanation,
    results_table,
)


@pytest.fixture(scope="module")
def bank(checkpoint_dir: Path) -> ModelBank:
    return load_bank(checkpoint_dir)


@pytest.fixture(scope="module")
def examples(checkpoint_dir: Path) -> dict[str, Path]:
    paths = {path.stem: path for path in sorted((checkpoint_dir / "examples").glob("*.png"))}
    assert len(paths) == 10, "checkpoints/examples/ should hold one image per class"
    return paths


def test_bank_loads_all_three(bank: ModelBank) -> None:
    assert bank.norms == tuple(NORMS) and not bank.problems
    assert len(bank.classes) == 10
    for loaded in bank.models.values():
        assert not loaded.network.training
        assert not any(p.requires_grad for p in loaded.network.parameters())


def test_each_model_gets_the_confident_examples_right(bank: ModelBank, examples: dict[str, Path]) -> None:
    for name, path in examples.items():
        prediction = bank.predict(prepare(path)[0])
        for norm in NORMS:
            probabilities = prediction.probabilities[norm]
            assert probabilities.shape == (10,) and abs(float(probabilities.sum()) - 1) < 1e-4
            assert bank.classes[prediction.top(norm)] == name, f"{norm} calls the {name} example something else"


def test_app_matches_the_probabilities_training_recorded(bank: ModelBank, checkpoint_dir: Path) -> None:
    # Same images, same models: any difference in normalization or channel order shows up here.
    mistakes = load_mistakes(checkpoint_dir / "mistakes.npz")
    for column, norm in enumerate(mistakes.norms):
        recorded = mistakes.probabilities[:64, column]
        np.testing.assert_allclose(bank.models[norm].probabilities(mistakes.images[:64]), recorded, atol=2e-3)
        single = bank.predict(mistakes.images[0]).probabilities[norm]
        np.testing.assert_allclose(single, recorded[0], atol=2e-3)


def test_concurrent_predictions_match_sequential_ones(bank: ModelBank) -> None:
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    expected = [bank.predict(image).probabilities for image in images]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda image: bank.predict(image).probabilities, images))
    for want, have in zip(expected, got, strict=True):
        for norm in NORMS:
            np.testing.assert_allclose(have[norm], want[norm], atol=1e-6)


def test_missing_and_broken_checkpoints_leave_the_others_serving(checkpoint_dir: Path, tmp_path: Path) -> None:
    shutil.copy(checkpoint_dir / "bn.safetensors", tmp_path / "bn.safetensors")
    (tmp_path / "gn.safetensors").write_bytes(b"this is not a checkpoint")
    partial = load_bank(tmp_path)  # ln.safetensors is absent
    assert partial.norms == ("bn",)
    assert "python -m training --norm gn" in partial.problems["gn"]
    assert "python -m training --norm ln" in partial.problems["ln"]
    assert "does not exist" in partial.problems["ln"]
    prediction = partial.predict(np.zeros((32, 32, 3), dtype=np.uint8))
    assert list(prediction.probabilities) == ["bn"]

    from webapp.layout import build_demo

    demo = build_demo(tmp_path)  # the page still builds, with a banner and no mistakes file
    config = str(demo.get_config_file())
    assert "GroupNorm is unavailable" in config and "python -m training --norm ln" in config


def test_grad_cam_every_layer(bank: ModelBank, examples: dict[str, Path]) -> None:
    pixels = prepare(examples["cat"])[0]
    for norm, loaded in bank.models.items():
        layers = feature_layers(loaded.network)
        assert len(layers) == len(loaded.network.features)
        assert layers[-1].label.startswith(f"block {len(layers)}")
        for layer in layers:
            cam, target = grad_cam(loaded.network, loaded.input(pixels), layer.index)
            # Scaled to a peak of exactly 1: an all-zero map (what a sign error gives) fails here.
            assert cam.shape == (32, 32) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
            assert target == bank.predict(pixels).top(norm)
        cam, target = grad_cam(loaded.network, loaded.input(pixels), layers[-1].index, target=3)
        assert target == 3
        assert all(p.grad is None for p in loaded.network.parameters())


def hooked_grad_cam(network: torch.nn.Module, x: torch.Tensor, layer: int, target: int) -> np.ndarray:
    """Grad-CAM the textbook way, independently of webapp.gradcam: hooks on one block, one full backward pass."""
    captured = {}

    def keep(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        captured["activations"] = output
        output.register_hook(lambda gradient: captured.__setitem__("gradient", gradient))

    handle = network.features[layer].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            network(x.clone().requires_grad_(True))[0, target].backward()
    finally:
        handle.remove()
    activations, gradient = captured["activations"].detach()[0], captured["gradient"][0]
    cam = torch.relu((gradient.mean(dim=(1, 2))[:, None, None] * activations).sum(0))
    cam = torch.nn.functional.interpolate(cam[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).numpy()


@pytest.mark.parametrize("norm", NORMS)
def test_grad_cam_agrees_with_a_hook_based_computation(norm: str, bank: ModelBank, examples: dict[str, Path]) -> None:
    loaded = bank.models[norm]
    x = loaded.input(prepare(examples["cat"])[0])
    layer = len(loaded.network.features) - 2  # a block in the middle of the network, at 8x8 or more
    for target in (bank.predict(prepare(examples["cat"])[0]).top(norm), 5):
        cam, _ = grad_cam(loaded.network, x, layer, target)
        expected = hooked_grad_cam(loaded.network, x, layer, target)
        assert np.allclose(cam, expected, atol=1e-5)
    assert all(p.grad is None for p in loaded.network.parameters())


def test_grad_cam_needs_a_valid_layer(bank: ModelBank) -> None:
    loaded = bank.models["bn"]
    with pytest.raises(ValueError, match="layer"):
        grad_cam(loaded.network, torch.zeros(1, 3, 32, 32), 99)


def test_overlay_opacity() -> None:
    pixels = np.full((32, 32, 3), 100, dtype=np.uint8)
    cam = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    assert np.array_equal(overlay(pixels, cam, 0.0, factor=4), enlarge(pixels, 4))
    full = overlay(pixels, cam, 1.0, factor=4)
    assert full.shape == (128, 128, 3)
    cold, hot = full[0, 0].astype(int), full[-1, -1].astype(int)
    assert cold[2] > 100 > cold[0] and hot[0] > 100 > hot[2]  # cold is blue, hot is red


def test_chart_is_valid_svg_with_one_bar_per_model_and_class() -> None:
    probabilities = {norm: np.full(10, 0.1, dtype=np.float32) for norm in NORMS}
    svg = probability_chart(probabilities, [f"class{i}" for i in range(10)], true_class=2)
    root = ET.fromstring(svg)
    bars = [rect for rect in root.iter("{http://www.w3.org/2000/svg}rect") if rect.find("{*}title") is not None]
    assert len(bars) == 30
    assert "class2 ✓" in svg


def test_mistakes_filters(checkpoint_dir: Path) -> None:
    mistakes = load_mistakes(checkpoint_dir / "mistakes.npz")
    assert mistakes.norms == tuple(NORMS) and len(mistakes) > 0
    # Every stored image is wrong for some model (up to ties that float16 storage can create).
    assert (~mistakes.correct).any(axis=1).mean() > 0.99
    for column, norm in enumerate(mistakes.norms):
        rows = select(mistakes, norm)
        assert (~mistakes.correct[rows, column]).all()
        assert len(rows) == int((~mistakes.correct[:, column]).sum())
        confidence = mistakes.probabilities[rows, column].max(axis=1)
        assert (np.diff(confidence) <= 0).all()
        others = [i for i in range(len(NORMS)) if i != column]
        for other in others:
            right_there = select(mistakes, norm, others=mistakes.norms[other])
            assert mistakes.correct[right_there, other].all() and (~mistakes.correct[right_there, column]).all()
        only = select(mistakes, norm, others=ONLY_THIS)
        assert mistakes.correct[only][:, others].all()
        everyone = select(mistakes, norm, others=ALL_WRONG)
        assert (~mistakes.correct[everyone]).all()
        cats = select(mistakes, norm, true_class=3, predicted_class=5)
        assert (mistakes.labels[cats] == 3).all() and (mistakes.predicted[cats, column] == 5).all()
    labels = [label for label, _ in agreement_choices(mistakes.norms, "ln")]
    assert "BN right, LN wrong" in labels and "all models wrong" in labels
    row = int(select(mistakes, "bn")[0])
    assert caption(mistakes, row, "bn").startswith(f"{mistakes.classes[mistakes.labels[row]]} → ")


def test_missing_mistakes_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(MistakesError, match="python -m training"):
        load_mistakes(tmp_path / "mistakes.npz")
    (tmp_path / "mistakes.npz").write_bytes(b"junk")
    with pytest.raises(MistakesError, match="not a readable"):
        load_mistakes(tmp_path / "mistakes.npz")


def test_handlers_classify_explain_and_relabel(bank: ModelBank, examples: dict[str, Path]) -> None:
    handlers = Handlers(bank, None)
    shown = handlers.classify({"path": str(examples["ship"])}, "crop", 4)
    assert set(shown) == set(CLASSIFY_OUTPUTS)
    preview, pixels, state = shown["preview"], shown["pixels"], shown["probabilities"]
    labels = [shown[LABELS[norm]] for norm in NORMS]
    chart, verdict, timing = shown["chart"], shown["verdict"], shown["timing"]
    assert np.array_equal(read_png(preview), pixels) and pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert [next(iter(label)) for label in labels] == ["ship"] * 3
    assert all(len(label) == 4 for label in labels)
    assert "All three models say <b>ship</b>" in verdict and "<svg" in chart and "ms" in timing
    assert [len(label) for label in handlers.labels(state, 10).values()] == [10, 10, 10]
    assert [len(label) for label in handlers.labels(state, 99).values()] == [10, 10, 10]  # never more than ten
    explained = handlers.explain(pixels, handlers.layers[-1].index, 0.5, TOP_CLASS)
    cams = [explained[name] for name in CAMS.values()]
    assert len(cams) == 3 and all(read_png(cam).shape == CAM_SHAPE for cam in cams)
    assert explained[CAM_NOTE].split(" · ") == [f"Where {title} looks for “ship”"
                                                for title in ("BatchNorm", "GroupNorm", "LayerNorm")]
    cleared = handlers.classify(None, "crop", 3)  # a cleared input clears the outputs
    assert set(cleared) == set(CLASSIFY_OUTPUTS) and cleared["preview"] == "" and cleared["label_bn"] is None


def test_inline_images_escape_their_text_and_an_unavailable_model_leaves_its_map_empty(bank: ModelBank) -> None:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    html = image_html(pixels, PREVIEW, 'a "cat" <b>')
    assert 'alt="a &quot;cat&quot; &lt;b&gt;"' in html and np.array_equal(read_png(html), pixels)
    without_gn = {norm: loaded for norm, loaded in bank.models.items() if norm != "gn"}
    handlers = Handlers(dataclasses.replace(bank, models=without_gn), None)
    shown = handlers.explain(pixels, handlers.layers[-1].index, 0.5, TOP_CLASS)
    assert shown[CAMS["gn"]] == "" and "GroupNorm is unavailable" in shown[CAM_NOTE]
    assert all(read_png(shown[CAMS[norm]]).shape == CAM_SHAPE for norm in ("bn", "ln"))
    assert set(handlers.explain(None, 0, 0.5, TOP_CLASS).values()) == {""}  # nothing classified yet


def test_handlers_disagreement_message(bank: ModelBank) -> None:
    handlers = Handlers(bank, None)
    one_hot = np.eye(10, dtype=np.float32)
    assert "disagree" in handlers.verdict({"bn": one_hot[0], "gn": one_hot[1], "ln": one_hot[0]})
    assert "All three models say" in handlers.verdict({norm: one_hot[4] for norm in NORMS})


def test_handlers_turn_bad_uploads_into_messages(bank: ModelBank, tmp_path: Path) -> None:
    handlers = Handlers(bank, None)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image"):
        handlers.classify({"path": str(text)}, "crop", 3)
    with pytest.raises(gr.Error, match="Unknown fit"):
        handlers.classify({"path": str(text)}, "zoom", 3)
    good = tmp_path / "grey.png"
    Image.new("RGB", (50, 50), (128, 128, 128)).save(good)
    assert handlers.classify(str(good), "pad", 3)["label_bn"] is not None


def test_handlers_browse_and_inspect(bank: ModelBank, checkpoint_dir: Path) -> None:
    mistakes = load_mistakes(checkpoint_dir / "mistakes.npz")
    handlers = Handlers(bank, mistakes)
    browsed = handlers.browse("ln", "any", "any", "bn", 16)
    tiles, summary, rows = browsed["gallery"], browsed["summary"], browsed["rows"]
    assert len(tiles) == len(rows) <= 16 and "BN right, LN wrong" in summary
    assert all(" → " in text and text.endswith("%)") for _, text in tiles)
    inspected = handlers.inspect(rows, gr.SelectData(None, {"index": 0, "value": None}))
    image, text, chart = inspected["picked"], inspected["picked_text"], inspected["picked_chart"]
    assert np.array_equal(read_png(image), mistakes.images[rows[0]])
    assert all(np.array_equal(read_png(path), mistakes.images[row]) for (path, _), row in zip(tiles, rows, strict=True))
    assert "✓ BatchNorm" in text and "✗ LayerNorm" in text and "<svg" in chart
    with pytest.raises(gr.Error, match="Unknown class"):
        handlers.browse("bn", "unicorn", ANY, ANY, 8)


def test_training_report_shows_a_retrained_reference_beside_ours(tmp_path: Path) -> None:
    ours = {"bn": {"parameters": 1000, "epochs": 3, "train_accuracy": 0.5, "test_accuracy": 0.25, "train_seconds": 90}}
    (tmp_path / "reference").mkdir()
    write_results(tmp_path / "results.json", ours)
    write_results(tmp_path / "reference" / "results.json", {"bn": {"train_accuracy": 0.7, "test_accuracy": 0.6}})
    headers, rows = results_table(ModelBank(CheckpointFolder(tmp_path)))
    assert headers[-1] == "Reference, our recipe (test)"
    assert rows[0] == ["BatchNorm", "1,000", "3", "50.00%", "25.00%", "1.5 min", "74.53% / 74.71%", "70.00% / 60.00%"]
    assert rows[1][1:6] == ["–"] * 5 and rows[1][-1] == "–"  # no GroupNorm results on either side


def test_training_report_shows_the_spread_over_seeds_and_what_the_intervals_allow(tmp_path: Path) -> None:
    ours = {norm: {"parameters": 1000, "epochs": 3, "train_accuracy": 0.5, "test_accuracy": 0.25} for norm in NORMS}
    over_seeds = {"bn": {"runs": [{}, {}, {}], "test_accuracy": {"mean": 0.8512, "std": 0.0021, "n": 3}},
                  "gn": {"runs": [{}], "test_accuracy": {"mean": 0.83, "std": 0.0, "n": 1}}}
    differences = {"bn-gn": {"verdict": "BN is better than GN by 2.00 points"}}
    write_results(tmp_path / "results.json", ours, over_seeds, differences)
    bank = ModelBank(CheckpointFolder(tmp_path))
    headers, rows = results_table(bank)
    assert headers[5] == SEEDS_HEADER and rows[0][5] == "85.12 ± 0.21% (3 seeds)" and rows[2][5] == "–"
    assert "- BN is better than GN by 2.00 points" in differences_markdown(bank)


def test_training_report(bank: ModelBank) -> None:
    headers, rows = results_table(bank)
    assert [h for h in headers if h != SEEDS_HEADER][: len(TABLE_HEADERS)] == TABLE_HEADERS
    assert [row[0] for row in rows] == ["BatchNorm", "GroupNorm", "LayerNorm"]
    assert all(len(row) == len(headers) for row in rows)
    for norm, row in zip(NORMS, rows, strict=True):
        assert row[headers.index("Reference (published)")] == (
            f"{100 * REFERENCE.published[norm].train_accuracy:.2f}% / "
            f"{100 * REFERENCE.published[norm].test_accuracy:.2f}%")
        assert row[4] == f"{100 * bank.models[norm].metadata['test_accuracy']:.2f}%"
    text = explanation(bank)
    assert "(N, H, W)" in text and "(C/G, H, W)" in text and "GroupNorm(1, C)" in text and "running averages" in text


def test_app_and_training_give_the_network_the_same_input(bank: ModelBank) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    trained_on = standardize(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    for loaded in bank.models.values():
        assert torch.equal(loaded.input(pixels), trained_on)
        assert torch.equal(loaded.input(pixels[0]), trained_on[:1])


def test_the_events_every_call_runs_send_what_gradios_own_postprocessing_would(checkpoint_dir: Path,
                                                                                examples: dict[str, Path]) -> None:
    """/classify and /gradcam prepare their values in the handler's thread (postprocess=False): the same values."""
    import asyncio

    from gradio.state_holder import SessionState

    from webapp.layout import build_demo, named, prepared

    demo = build_demo(checkpoint_dir)
    events = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("classify", "gradcam")}
    assert set(events) == {"classify", "gradcam"} and not any(fn.postprocess for fn in events.values())
    # Every event of ours without Gradio's postprocessing (the top-k relabelling too) prepares its values.
    ours = [fn for fn in demo.fns.values() if not fn.postprocess and fn.name != "load_example"]  # gr.Examples' own
    ready = prepared(dict, {}).__code__
    assert len(ours) > len(events) and all(fn.fn.__code__ is ready for fn in ours)
    image = {"path": str(examples["cat"]), "meta": {"_type": "gradio.FileData"}}
    inputs = {"classify": [image, "crop", 3, "single"], "gradcam": [events["gradcam"].inputs[1].value, 0.5, TOP_CLASS]}
    session = SessionState(demo)

    def call(api_name: str) -> list:
        fn = events[api_name]
        given = inputs[api_name] if api_name == "classify" else [session[fn.inputs[0]._id], *inputs[api_name]]
        return asyncio.run(demo.process_api(fn, given, state=session))["data"]

    served = {api_name: call(api_name) for api_name in events}
    for api_name, fn in events.items():  # the same handler, with Gradio postprocessing each output itself
        handler = fn.fn.__wrapped__
        names = {name: component for name, component in zip(
            (*CLASSIFY_OUTPUTS,) if api_name == "classify" else (*CAMS.values(), CAM_NOTE), fn.outputs, strict=True)}
        fn.fn, fn.postprocess = named(handler, names), True
        assert fn.fn.__wrapped__ is handler
        own = call(api_name)
        timing = CLASSIFY_OUTPUTS.index("timing") if api_name == "classify" else None
        assert [v for i, v in enumerate(own) if i != timing] == [v for i, v in enumerate(served[api_name])
                                                                 if i != timing], api_name
    assert served["classify"][1]["label"] == "cat" and served["gradcam"][0].startswith("<img")
