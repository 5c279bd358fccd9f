"""benchmarks/photos.py on a small folder of generated photos: counts, the app's own path, clear reports."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artifacts.photos import read_photo_results
from artifacts.weights import load_checkpoint, read_metadata, save_checkpoint
from benchmarks.photos import ModelPoint, find_photos, main, measure, model_folders, print_trend, trend_points
from model import CLASSES
from webapp.callbacks import Handlers
from webapp.inference import load_bank
from webapp.preprocess import DEFAULT_RESAMPLING, fit_to_model, load_image

# A folder of real photos by class, when one is named: the shipped numbers are re-measured on it.
SHARED_PHOTOS = Path(os.environ.get("PHOTOS_DIR", "")) if os.environ.get("PHOTOS_DIR") else None


def photo_of(example: Path, path: Path, size: tuple[int, int] = (160, 120)) -> None:
    """A larger, non-square photo around a 32x32 test image (noise at the sides), as a JPEG or PNG."""
    rng = np.random.default_rng(len(path.name))
    canvas = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    with Image.open(example) as image:
        inner = np.asarray(image.convert("RGB").resize((size[1], size[1]), Image.Resampling.NEAREST))
    left = (size[0] - size[1]) // 2
    canvas[:, left:left + size[1]] = inner
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


@pytest.fixture
def folder(checkpoint_dir: Path, tmp_path: Path) -> Path:
    examples = checkpoint_dir / "examples"
    root = tmp_path / "photos"
    photo_of(examples / "airplane.png", root / "airplane" / "a.png")
    photo_of(examples / "cat.png", root / "cat" / "b.jpg")
    photo_of(examples / "ship.png", root / "cat" / "c.png")  # a ship filed as a cat: every model is wrong on it
    photo_of(examples / "dog.png", root / "kittens" / "d.png")  # not a class
    (root / "cat" / "notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("photos by class")
    (root / ".cache").mkdir()
    return root


def test_the_folder_is_read_by_class_and_the_rest_is_reported(folder: Path) -> None:
    photos, skipped = find_photos(folder, CLASSES)
    assert sorted((p.path.name, CLASSES[p.label]) for p in photos) == [
        ("a.png", "airplane"), ("b.jpg", "cat"), ("c.png", "cat"), ("notes.jpg", "cat")]
    assert len(skipped) == 2
    assert any(line.startswith("kittens/: not a class") and "airplane, automobile" in line for line in skipped)
    assert any(line.startswith("readme.txt: a file outside any class folder") for line in skipped)


def test_the_results_count_per_norm_and_class_and_go_to_photos_json(
        folder: Path, checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out" / "photos.json"
    assert main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--output", str(output)]) == 0
    printed = capsys.readouterr()
    assert "kittens/: not a class" in printed.err and "notes.jpg" in printed.err and "readme.txt" in printed.err
    assert "airplane" in printed.out and "all" in printed.out
    results = json.loads(output.read_text())
    assert results["command"] == "python benchmarks/photos.py PATH --checkpoint-dir PATH --fit crop --views single"
    assert results["photos"] == 3 and results["fit"] == "crop" and results["views"] == "single"
    assert results["resampling"] == "lanczos"
    assert results["classes"] == ["airplane", "cat"]
    for norm in ("bn", "gn", "ln"):
        model = results["models"][norm]
        assert (model["correct"], model["total"]) == (2, 3), norm
        assert model["accuracy"] == pytest.approx(2 / 3)
        assert model["per_class"] == {"airplane": {"correct": 1, "total": 1}, "cat": {"correct": 1, "total": 2}}
    assert read_photo_results(output) == results  # the reader the model cards use takes it


def test_each_photo_gets_exactly_what_the_app_answers(folder: Path, checkpoint_dir: Path) -> None:
    bank = load_bank(checkpoint_dir)
    photos, _ = find_photos(folder, bank.classes)
    for fit in ("crop", "pad"):
        measured = measure(photos, bank, fit, ["single"])
        handlers = Handlers(bank, None)
        answered = measured.answers["single"]
        assert len(answered) == 3
        for path, probabilities in answered.items():
            app = handlers.classify(str(path), fit, 10)["probabilities"]
            for norm in bank.norms:
                np.testing.assert_allclose(probabilities[norm], app[norm], rtol=0, atol=1e-6)


def test_another_resampling_is_measured_through_the_apps_path_and_named_in_the_command(
        folder: Path, checkpoint_dir: Path, tmp_path: Path) -> None:
    bank = load_bank(checkpoint_dir)
    photos, _ = find_photos(folder, bank.classes)
    readable = [photo for photo in photos if photo.path.name != "notes.jpg"]
    answered = measure(readable, bank, "crop", ["single"], "box").answers["single"]
    lanczos = measure(readable, bank, "crop", ["single"]).answers["single"]
    assert any(not np.allclose(answered[photo.path]["bn"], lanczos[photo.path]["bn"]) for photo in readable)
    for photo in readable:
        pixels = fit_to_model(load_image(photo.path).picture, "crop", resampling="box")
        expected = bank.predict(pixels).probabilities
        for norm in bank.norms:
            np.testing.assert_allclose(answered[photo.path][norm], expected[norm], rtol=0, atol=1e-6)
    output = tmp_path / "photos.json"
    assert main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--resampling", "box",
                 "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["command"].endswith("--fit crop --views single --resampling box")
    assert results["resampling"] == "box"


def test_bad_folders_end_with_a_clear_message(checkpoint_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing"), "--checkpoint-dir", str(checkpoint_dir)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty" / "unknown").mkdir(parents=True)
    assert main([str(tmp_path / "empty"), "--checkpoint-dir", str(checkpoint_dir)]) == 2
    assert "no photos in" in capsys.readouterr().err
    (tmp_path / "junk" / "cat").mkdir(parents=True)
    (tmp_path / "junk" / "cat" / "a.jpg").write_text("text")
    assert main([str(tmp_path / "junk"), "--checkpoint-dir", str(checkpoint_dir)]) == 2
    assert "none of the 1 files" in capsys.readouterr().err
    assert main([str(tmp_path / "junk"), "--checkpoint-dir", str(tmp_path / "nothing")]) == 2
    assert "no model could be loaded" in capsys.readouterr().err


@pytest.mark.skipif(SHARED_PHOTOS is None, reason="no folder of real photos named (set PHOTOS_DIR)")
def test_the_shipped_photo_numbers_are_those_of_the_shipped_models(checkpoint_dir: Path, tmp_path: Path) -> None:
    shipped = read_photo_results(checkpoint_dir / "photos.json")
    assert shipped, "checkpoints/photos.json is missing: run benchmarks/photos.py with --output"
    output = tmp_path / "photos.json"
    assert main([str(SHARED_PHOTOS), "--checkpoint-dir", str(checkpoint_dir), "--output", str(output),
                 "--views", shipped["views"], "--fit", shipped["fit"],
                 "--resampling", shipped.get("resampling", DEFAULT_RESAMPLING)]) == 0
    assert read_photo_results(output)["models"] == shipped["models"]


def test_two_view_modes_are_compared_photo_by_photo() -> None:
    from benchmarks.photos import Photo, paired

    right, wrong = np.array([0.9, 0.1]), np.array([0.1, 0.9])  # class 0 is every photo's label
    # Five photos only the second mode gets right, none only the first, one both get right.
    photos = [Photo(Path(f"{i}.jpg"), 0) for i in range(6)]
    single = {photo.path: {"bn": wrong} for photo in photos[:5]} | {photos[5].path: {"bn": right}}
    crops = {photo.path: {"bn": right} for photo in photos}
    assert paired(single, crops, photos, "bn") == (5, 0, pytest.approx(2 / 32))
    assert paired(crops, single, photos, "bn") == (0, 5, pytest.approx(2 / 32))
    assert paired(single, single, photos, "bn") == (0, 0, 1.0)  # nothing to tell them apart


def test_another_set_of_models_is_compared_photo_by_photo(folder: Path, checkpoint_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--against", str(checkpoint_dir)]) == 0
    out = capsys.readouterr().out
    assert f"these models against those in {checkpoint_dir}" in out
    assert out.count("0 / 0, p = 1.000") == 3  # the same models: not one photo differs
    assert main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--against", str(tmp_path / "none")]) == 2
    assert "no model in" in capsys.readouterr().err


def copy_models(source: Path, target: Path, test_accuracy: object = "as trained") -> None:
    """The three models of ``source`` in ``target``, with another test accuracy in their metadata if given."""
    target.mkdir(parents=True, exist_ok=True)
    for norm in ("bn", "gn", "ln"):
        if test_accuracy == "as trained":
            shutil.copy(source / f"{norm}.safetensors", target / f"{norm}.safetensors")
        else:
            model, metadata = load_checkpoint(source / f"{norm}.safetensors")
            save_checkpoint(model, target / f"{norm}.safetensors", {**metadata, "test_accuracy": test_accuracy})


def test_the_trend_measures_every_model_under_the_checkpoint_folder(
        folder: Path, checkpoint_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bank = load_bank(checkpoint_dir)
    photos, _ = find_photos(folder, bank.classes)
    points, left_out = trend_points(photos, checkpoint_dir, "crop", "single")
    assert len(left_out) == 1 and "notes.jpg" in left_out[0]  # not an image: said once, not once per folder
    weights = sorted(checkpoint_dir.rglob("*.safetensors"))
    assert sorted((point.folder, point.norm) for point in points) == sorted(
        (path.parent.relative_to(checkpoint_dir).as_posix(), path.stem) for path in weights)
    for point in points:
        metadata = read_metadata(checkpoint_dir / point.folder / f"{point.norm}.safetensors")
        assert point.test_accuracy == metadata["test_accuracy"]
        assert point.total == 3 and point.correct <= 2  # the ship filed as a cat is nobody's
    shipped = next(point for point in points if point.folder == "." and point.norm == "bn")
    assert shipped.correct == measure(photos, bank, "crop", ["single"]).counts["single"]["bn"]["correct"]
    # Every model gets the same two of these three photos: there is no line to draw, and the run says so.
    assert main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--trend"]) == 2
    printed = capsys.readouterr()
    assert "every model under" in printed.out and all(f"\n{point.folder} " in printed.out for point in points)
    assert f"no line through {len(points)} models: every y is the same" in printed.err


def test_the_trend_leaves_out_models_without_a_test_accuracy(folder: Path, checkpoint_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "models"
    copy_models(checkpoint_dir, root)
    copy_models(checkpoint_dir, root / "confirm", test_accuracy=None)  # trained for the validation split
    (root / "broken").mkdir()
    (root / "broken" / "gn.safetensors").write_text("not a checkpoint")
    photos, _ = find_photos(folder, CLASSES)
    points, left_out = trend_points(photos, root, "crop", "single")
    assert [(point.folder, point.norm) for point in points] == [(".", "bn"), (".", "gn"), (".", "ln")]
    models_left_out = [line for line in left_out if "notes.jpg" not in line]
    assert [line.split(":")[0] for line in models_left_out] == ["broken/gn", "confirm/bn", "confirm/gn", "confirm/ln"]
    assert "not a readable safetensors checkpoint" in models_left_out[0] and "no test accuracy" in models_left_out[1]
    # A folder with models only below it is measured all the same; one with none says so.
    assert main([str(folder), "--checkpoint-dir", str(root / "confirm"), "--trend"]) == 2
    assert "no model with a test accuracy under" in capsys.readouterr().err
    assert [path.relative_to(tmp_path).as_posix() for path in model_folders(tmp_path)] == [
        "models", "models/broken", "models/confirm"]


def test_the_trend_line_and_where_it_reaches_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    # Test accuracy 50 to 80%, photos 10, 30, 20, 40%: the worked example of tests/test_statistics.py scaled by 10,
    # so the slope is 0.8 (interval 0.8 -/+ 1.8255) through the centre (65, 25).
    points = [ModelPoint(".", "bn", test, right, 10) for test, right in ((0.5, 1), (0.6, 3), (0.7, 2), (0.8, 4))]
    assert print_trend(points, 0.75)
    out = capsys.readouterr().out
    assert "changes by +0.80 points per point of test accuracy (95% interval -1.03 to +2.63; r = 0.80" in out
    # 65 + 50 / 0.8 = 127.5; with the steepest slope, 65 + 50 / 2.6255 = 84.0
    assert "reaches 75% of the photos at a test accuracy of 127.5% (beyond 100%)" in out
    assert "with the interval's steepest slope, at 84.0%." in out
    falling = [ModelPoint(".", "bn", test, right, 10) for test, right in ((0.5, 4), (0.6, 3), (0.7, 1))]
    assert print_trend(falling, 0.75)
    assert "at a test accuracy of never (the slope is not above zero)" in capsys.readouterr().out


def test_the_trend_refuses_options_it_does_not_take(folder: Path, checkpoint_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--output", str(tmp_path / "photos.json")], ["--against", str(checkpoint_dir)]):
        with pytest.raises(SystemExit) as stopped:
            main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--trend", *extra])
        assert stopped.value.code == 2
        assert "leave out --output and --against" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(folder), "--checkpoint-dir", str(checkpoint_dir), "--trend", "--target", "75"])
    assert "--target is a share of the photos" in capsys.readouterr().err
