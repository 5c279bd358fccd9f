"""Multi-view inference: the views of a picture, their average in the bank, the Classify handler and /classify."""

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.app_server import app_server
from webapp.callbacks import Handlers
from webapp.inference import load_bank
from webapp.preprocess import VIEW_LABELS, VIEW_MODES, fit_to_model, model_views, prepare


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-square picture with detail everywhere, so every view differs."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("views") / "photo.png"
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def bank(checkpoint_dir: Path):
    return load_bank(checkpoint_dir)


@pytest.mark.parametrize("resampling", ["lanczos", "box"])
@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_the_views_are_the_input_its_shifted_crops_and_their_mirror_images(photo: Path, fit: str,
                                                                          resampling: str) -> None:
    pixels, upload = prepare(photo, fit, resampling)
    assert np.array_equal(pixels, fit_to_model(upload.picture, fit, resampling=resampling))
    assert np.array_equal(model_views(upload.picture, pixels, fit, "single"), pixels[None])
    flip = model_views(upload.picture, pixels, fit, "flip")
    assert flip.shape == (2, 32, 32, 3) and np.array_equal(flip[0], pixels) and np.array_equal(flip[1], pixels[:, ::-1])
    crops = model_views(upload.picture, pixels, fit, "crops", resampling)
    larger = fit_to_model(upload.picture, fit, 36, resampling)
    corners = [larger[:32, :32], larger[:32, 4:], larger[4:, :32], larger[4:, 4:]]
    assert crops.shape == (10, 32, 32, 3) and crops.dtype == np.uint8 and np.array_equal(crops[0], pixels)
    for view, expected in zip(crops[1:5], corners, strict=True):
        assert np.array_equal(view, expected)
    for view, mirrored in zip(crops[:5], crops[5:], strict=True):
        assert np.array_equal(mirrored, view[:, ::-1])
    assert len({view.tobytes() for view in crops}) == 10
    assert set(VIEW_LABELS) == set(VIEW_MODES)
    with pytest.raises(ValueError, match="unknown views"):
        model_views(upload.picture, pixels, fit, "many")


def test_the_bank_averages_the_probabilities_of_the_views(photo: Path, bank) -> None:
    pixels, upload = prepare(photo)
    stack = model_views(upload.picture, pixels, "crop", "crops")
    averaged = bank.predict(stack).probabilities
    for norm in bank.norms:
        each = np.stack([bank.predict(view).probabilities[norm] for view in stack])
        np.testing.assert_allclose(averaged[norm], each.mean(0), rtol=0, atol=1e-6)
        np.testing.assert_allclose(averaged[norm].sum(), 1.0, atol=1e-5)


def test_classify_averages_the_chosen_views_and_uses_one_by_default(photo: Path, bank) -> None:
    handlers = Handlers(bank, None)
    default = handlers.classify(str(photo), "crop", 10)
    assert "views" not in default["input_note"]
    pixels, upload = prepare(photo)
    for views in ("single", None):
        same = handlers.classify(str(photo), "crop", 10, views)
        assert same["probabilities"] == default["probabilities"] == {
            norm: p.tolist() for norm, p in bank.predict(pixels).probabilities.items()}
    flipped = handlers.classify(str(photo), "crop", 10, "flip")
    expected = bank.predict(model_views(upload.picture, pixels, "crop", "flip")).probabilities
    assert flipped["probabilities"] == {norm: p.tolist() for norm, p in expected.items()}
    assert flipped["probabilities"] != default["probabilities"]
    assert "Averaged over 2 views" in flipped["input_note"]
    assert np.array_equal(flipped["pixels"], pixels)  # the preview and Grad-CAM keep the single input
    with pytest.raises(gr.Error, match="Unknown views"):
        handlers.classify(str(photo), "crop", 10, "all of them")


def test_the_api_takes_the_views_after_the_other_inputs_and_defaults_to_one(
        checkpoint_dir: Path, photo: Path, bank, tmp_path: Path) -> None:
    handlers = Handlers(bank, None)
    with app_server(tmp_path / "app.log", env={"CHECKPOINT_DIR": str(checkpoint_dir)}) as server:
        api = Client(server.url, verbose=False, download_files=False, analytics_enabled=False)
        answers = {
            "default": api.predict(handle_file(str(photo)), "crop", 10, api_name="/classify"),
            "crops": api.predict(handle_file(str(photo)), "crop", 10, "crops", api_name="/classify"),
        }
    for name, views in (("default", "single"), ("crops", "crops")):
        expected = handlers.classify(str(photo), "crop", 10, views)["probabilities"]
        for label, norm in zip(answers[name][1:4], ("bn", "gn", "ln"), strict=True):
            got = {c["label"]: c["confidence"] for c in label["confidences"]}
            want = {bank.classes[i]: p for i, p in enumerate(expected[norm])}
            assert got == pytest.approx(want, abs=1e-6), (name, norm)
