"""A crowd at the door: many visitors sending the same image at the same moment, and what stays on disk.

Over HTTP, `python app.py` is called by 64 gradio_client clients at once (downloading their
results, as a client does by default) with the same image, for /classify and /gradcam; in
process, the handlers of the events that are not public API run from 64 threads at once; and
an app started with a 3-second retention is watched deleting uploads and generated images.
"""

import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from artifacts.mistakes import MistakeSet, load_mistakes
from model import NORMS
from tests.app_server import Server, app_server
from tests.conftest import CAM_SHAPE, DATA_URL, read_png
from webapp.callbacks import CAMS, LABELS, TOP_CLASS, Handlers
from webapp.inference import ModelBank, load_bank
from webapp.lab import LabDemo
from webapp.layout import _example_pixels
from webapp.mistakes import ANY
from webapp.output_files import IMAGE_FOLDER, png_file, remove_empty_folders
from webapp.preprocess import prepare

CROWD = 64
ROUNDS = 3
LAST_LAYER = 4
OPACITY = 0.5


# ---- many at once, and what they got ----------------------------------------------------------


def all_at_once(count: int, call: Callable[[int], object]) -> list:
    """``call(i)`` for each i below ``count``, from ``count`` threads released together; exceptions are returned."""
    barrier = threading.Barrier(count)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return call(i)
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported below
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def failures(results: list) -> list[str]:
    return [f"{type(result).__name__}: {result}" for result in results if isinstance(result, Exception)]


def assert_no_failures(results: list, what: str) -> None:
    failed = failures(results)
    assert not failed, f"{len(failed)} of {len(results)} {what} failed, e.g. {failed[:3]}"


def png_pixels(path: str | Path) -> np.ndarray:
    """The pixels of a complete PNG, a file or inline (a cut-short or empty one fails here)."""
    if isinstance(path, str) and DATA_URL in path:
        return read_png(path)
    path = Path(path)
    size = path.stat().st_size
    assert size > 0, f"{path.name} is empty"
    return read_png(path)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dog(checkpoint_dir: Path) -> Path:
    return checkpoint_dir / "examples" / "dog.png"


@pytest.fixture(scope="module")
def bank(checkpoint_dir: Path) -> ModelBank:
    return load_bank(checkpoint_dir)


@pytest.fixture(scope="module")
def mistakes(checkpoint_dir: Path) -> MistakeSet:
    return load_mistakes(checkpoint_dir / "mistakes.npz")


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("crowd-server")
    env = {"CHECKPOINT_DIR": str(checkpoint_dir), "GRADIO_TEMP_DIR": str(folder / "gradio")}
    with app_server(folder / "app.log", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def crowd(server: Server, tmp_path_factory: pytest.TempPathFactory):
    """64 clients, each a visitor of its own, downloading the files they get (gradio_client's default)."""
    downloads = tmp_path_factory.mktemp("downloads")

    def connect(_: int) -> Client:
        return Client(server.url, verbose=False, analytics_enabled=False, download_files=str(downloads))

    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(connect, range(CROWD)))
    # gradio_client stages every download in a new folder of the system's temporary folder and leaves
    # it there, empty: hundreds per run. They go to this test's own folder instead.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("download-staging")))
        yield clients


def classify(api: Client, path: Path | str) -> tuple:
    return api.predict(handle_file(str(path)), "crop", 3, api_name="/classify")


# ---- over HTTP --------------------------------------------------------------------------------


def test_64_clients_sending_the_same_image_all_get_complete_answers(crowd: list[Client], bank: ModelBank,
                                                                    dog: Path) -> None:
    pixels = prepare(dog)[0]
    probabilities = bank.predict(pixels).probabilities
    expected = {norm: (bank.classes[int(p.argmax())], float(p.max())) for norm, p in probabilities.items()}
    for round_ in range(ROUNDS):
        results = all_at_once(CROWD, lambda i: classify(crowd[i], dog))
        assert_no_failures(results, f"classifications in round {round_ + 1}")
        for i, result in enumerate(results):
            preview = png_pixels(result[0])
            assert preview.shape == (32, 32, 3) and np.array_equal(preview, pixels), f"client {i}, round {round_ + 1}"
            for norm, label in zip(NORMS, result[1:4], strict=True):
                want_class, want_confidence = expected[norm]
                assert label["label"] == want_class, f"client {i}, {norm}"
                assert abs(label["confidences"][0]["confidence"] - want_confidence) < 1e-4, f"client {i}, {norm}"


def test_64_clients_asking_for_grad_cam_at_once_all_get_complete_answers(crowd: list[Client], bank: ModelBank,
                                                                         dog: Path) -> None:
    pixels = prepare(dog)[0]
    handlers = Handlers(bank, None)
    cams = handlers.explain(pixels, LAST_LAYER, OPACITY, TOP_CLASS)
    expected = [png_pixels(cams[name]) for name in CAMS.values()]
    assert_no_failures(all_at_once(CROWD, lambda i: classify(crowd[i], dog)), "classifications")
    for round_ in range(ROUNDS):
        results = all_at_once(CROWD, lambda i: crowd[i].predict(LAST_LAYER, OPACITY, TOP_CLASS, api_name="/gradcam"))
        assert_no_failures(results, f"Grad-CAM calls in round {round_ + 1}")
        for i, (*cams, note) in enumerate(results):
            assert note.split(" · ") == [f"Where {title} looks for “dog”" for title in
                                         ("BatchNorm", "GroupNorm", "LayerNorm")], f"client {i}"
            for cam, want in zip(cams, expected, strict=True):
                got = png_pixels(cam)
                assert got.shape == want.shape == CAM_SHAPE, f"client {i}"
                # The server runs one PyTorch thread, this process maybe more: the sums may round differently.
                difference = np.abs(got.astype(int) - want.astype(int))
                assert difference.max() <= 2 and difference.mean() < 0.05, f"client {i}, round {round_ + 1}"


def test_server_memory_stays_flat_over_hundreds_of_requests(crowd: list[Client], server: Server, dog: Path,
                                                            tmp_path: Path) -> None:
    # Half the calls send the same example, half one of 64 different photos: uploads and outputs of both kinds.
    rng = np.random.default_rng(7)
    uploads = []
    for i in range(CROWD):
        uploads.append(tmp_path / f"upload{i}.png")
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(uploads[-1])

    def requests(i: int, count: int) -> None:
        for j in range(count):
            classify(crowd[i], dog if (i + j) % 2 else uploads[(i + j) % CROWD])

    assert_no_failures(all_at_once(CROWD, lambda i: requests(i, 1)), "warm-up calls")
    before = rss_mb(server.pid)
    assert_no_failures(all_at_once(CROWD, lambda i: requests(i, 5)), "calls")
    growth = rss_mb(server.pid) - before
    print(f"server RSS {before:.0f} MB before {5 * CROWD} requests, grew by {growth:.1f} MB")
    assert growth < 50, f"the server's memory grew by {growth:.0f} MB over {5 * CROWD} requests"


# ---- in process: the events that are not public API -----------------------------------------


@pytest.fixture(scope="module")
def handlers(bank: ModelBank, mistakes: MistakeSet) -> Handlers:
    return Handlers(bank, mistakes)


@pytest.fixture(scope="module")
def lab(bank: ModelBank, mistakes: MistakeSet, checkpoint_dir: Path) -> LabDemo:
    return LabDemo(bank, _example_pixels(sorted((checkpoint_dir / "examples").glob("*.png"))), mistakes.images)


def crowd_of_handlers(call: Callable[[], object], paths: Callable[[object], list[str]]) -> list[tuple]:
    """``call()`` from 64 threads at once; for each, its result and the pixels of its images (files, or inline).

    A thread reads its files as soon as its call returns, as the server would send them, while
    other threads may still be writing the same image. The files are removed first (after one
    call alone finds them), so that the crowd writes them again, all at the same moment.
    """
    for path in paths(call()):
        if DATA_URL not in str(path):
            Path(path).unlink(missing_ok=True)

    def visit() -> tuple:
        result = call()
        return result, [png_pixels(path) for path in paths(result)]

    results = all_at_once(CROWD, lambda _: visit())
    assert_no_failures(results, "handler calls")
    return results


def test_64_threads_classifying_and_explaining_the_same_upload(handlers: Handlers, dog: Path) -> None:
    pixels = prepare(dog)[0]
    for shown, (preview,) in crowd_of_handlers(lambda: handlers.classify({"path": str(dog)}, "crop", 3),
                                               lambda r: [r["preview"]]):
        assert np.array_equal(preview, pixels)
        assert [next(iter(shown[LABELS[norm]])) for norm in NORMS] == ["dog"] * 3

    def explain() -> dict:
        return handlers.explain(pixels, LAST_LAYER, OPACITY, TOP_CLASS)

    def cam_paths(cams: dict) -> list[str]:
        return [cams[name] for name in CAMS.values()]

    alone = [png_pixels(path) for path in cam_paths(explain())]
    assert all(cam.shape == CAM_SHAPE for cam in alone)
    for _, cams in crowd_of_handlers(explain, cam_paths):
        assert all(np.array_equal(got, want) for got, want in zip(cams, alone, strict=True))


def test_64_threads_browsing_mistakes_and_clicking_the_same_tile(handlers: Handlers, mistakes: MistakeSet) -> None:
    def browse() -> dict:
        return handlers.browse("bn", "cat", "any", ANY, 16)

    rows = browse()["rows"]
    assert len(rows) == 16
    for browsed, tiles in crowd_of_handlers(browse, lambda r: [path for path, _ in r["gallery"]]):
        assert browsed["rows"] == rows
        assert all(np.array_equal(tile, mistakes.images[row]) for tile, row in zip(tiles, rows, strict=True))

    click = gr.SelectData(None, {"index": 3, "value": None})
    for picked, (image,) in crowd_of_handlers(lambda: handlers.inspect(rows, click), lambda r: [r["picked"]]):
        assert np.array_equal(image, mistakes.images[rows[3]])
        assert f"Test image #{int(mistakes.test_index[rows[3]])}" in picked["picked_text"]
        assert "<svg" in picked["picked_chart"]


def test_64_threads_moving_the_corruption_slider_and_drawing_companions(lab: LabDemo) -> None:
    def corrupt() -> dict:
        return lab.corrupted("dog", None, "gaussian_noise", 4)

    alone = corrupt()
    pixels = png_pixels(alone["corrupted"])
    assert pixels.shape == (256, 256, 3) and not np.array_equal(pixels[::8, ::8], lab.examples["dog"])
    for shown, (image,) in crowd_of_handlers(corrupt, lambda r: [r["corrupted"]]):
        assert np.array_equal(image, pixels)
        assert {**shown, "corrupted": None} == {**alone, "corrupted": None}

    companions = lab.companions("dog", None, 8, 3)
    assert all(result == companions for result in all_at_once(CROWD, lambda _: lab.companions("dog", None, 8, 3)))


def writers_and_readers(pixels: np.ndarray, path: Path, expected: bytes) -> list[bool]:
    """Half the crowd calls ``png_file(pixels)`` while the other half reads ``path`` until they are done.

    One entry per read that found the file: did it hold the whole PNG?
    """
    writers_left, lock, done = [CROWD // 2], threading.Lock(), threading.Event()
    reads: list[bool] = []

    def write() -> str:
        written = png_file(pixels)
        with lock:
            writers_left[0] -= 1
            if not writers_left[0]:
                done.set()
        return written

    def read() -> None:
        while True:
            finished = done.is_set()  # read once more after the last writer, so every reader sees the file
            try:
                reads.append(path.read_bytes() == expected)
            except FileNotFoundError:
                pass
            if finished:
                return

    results = all_at_once(CROWD, lambda i: write() if i % 2 else read())
    assert_no_failures(results, "writers and readers")
    assert {result for result in results if result is not None} == {str(path)}
    return reads


def test_png_file_under_a_crowd_of_writers_and_readers() -> None:
    # A large noisy image takes long enough to write that a reader would catch a file being rewritten in place.
    pixels = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    path = Path(png_file(pixels))
    expected = path.read_bytes()
    assert np.array_equal(png_pixels(path), pixels)
    for _ in range(5):
        path.unlink()  # every round starts with no file, so the writers race to create it
        reads = writers_and_readers(pixels, path, expected)
        assert len(reads) >= CROWD // 2 and all(reads), f"{reads.count(False)} of {len(reads)} reads were incomplete"
    assert not [name for name in os.listdir(path.parent) if name.endswith(".tmp")]  # no temporary file left


# ---- retention --------------------------------------------------------------------------------


def listing(folder: Path) -> tuple[set[str], set[str]]:
    """(files, folders) under ``folder``, as paths relative to it. The app removes files and folders while this
    reads them: one removed mid-walk is left out (``os.walk`` skips a folder it can no longer open, where
    ``Path.rglob`` raises)."""
    files, folders = set(), set()
    for root, names_of_folders, names_of_files in os.walk(folder):
        here = Path(root).relative_to(folder)
        folders.update(str(here / name) for name in names_of_folders)
        files.update(str(here / name) for name in names_of_files)
    return files, folders


def test_remove_empty_folders_keeps_recent_full_and_gradio_folders(tmp_path: Path) -> None:
    old = time.time() - 100
    for name in ("old-empty", "old-full", "recent-empty", IMAGE_FOLDER, "nested/old-empty"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "old-full" / "photo.png").write_bytes(b"x")
    for name in ("old-empty", "old-full", IMAGE_FOLDER, "nested/old-empty", "nested"):
        os.utime(tmp_path / name, (old, old))
    assert remove_empty_folders(tmp_path, older_than=10) == 2
    # "nested" was modified just now, when its empty child went: it waits for the next sweep.
    assert listing(tmp_path)[1] == {"old-full", "recent-empty", IMAGE_FOLDER, "nested"}
    assert remove_empty_folders(tmp_path, older_than=0) == 2  # everything empty and not Gradio's own goes
    assert listing(tmp_path)[1] == {"old-full", IMAGE_FOLDER}
    assert remove_empty_folders(tmp_path / "missing", older_than=0) == 0


def test_uploads_and_generated_images_go_after_the_retention_time(checkpoint_dir: Path, dog: Path,
                                                                  tmp_path: Path) -> None:
    retention = 3
    folder = tmp_path / "gradio"
    env = {"CHECKPOINT_DIR": str(checkpoint_dir), "GRADIO_TEMP_DIR": str(folder)}
    photo = tmp_path / "holiday-photo.png"
    Image.fromarray(np.random.default_rng(11).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo)
    with app_server(tmp_path / "app.log", args=("--file-retention", str(retention)), env=env) as server:
        kept_files, _ = listing(folder)
        # What Gradio copies at start-up and keeps on purpose: the examples and the figures the page shows.
        assert {Path(name).name for name in kept_files} == {
            *(path.name for path in (checkpoint_dir / "examples").glob("*.png")),
            "curves.png", *(f"{norm}_confusion.png" for norm in NORMS),
            *(path.name for path in (checkpoint_dir / "lab").glob("*.png")),
        }
        api = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        result = classify(api, photo)
        cams = api.predict(LAST_LAYER, OPACITY, TOP_CLASS, api_name="/gradcam")
        # The preview and the Grad-CAM maps travel inside the answers: no file. The Inside view's maps are files.
        assert all(DATA_URL in html for html in (result[0], *cams[:3]))
        inside = api.predict(handle_file(str(photo)), 2, api_name="/inside")
        generated = {output["path"] for output in inside if isinstance(output, dict) and "path" in output}
        assert generated
        files, _ = listing(folder)
        new = {folder / name for name in files - kept_files}
        uploads = {path for path in new if path.name == photo.name}
        assert len(uploads) == 1 and next(iter(uploads)).read_bytes() == photo.read_bytes()
        assert {str(path) for path in new - uploads} == generated
        assert all(Path(path).parent == folder / IMAGE_FOLDER for path in generated)

        upload = next(iter(uploads))

        def gone() -> bool:
            return listing(folder)[0] == kept_files and not upload.parent.exists()

        deadline = time.monotonic() + 60  # files go after 3-4 s, their folders about 3 s later
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.5)
        files, folders = listing(folder)
        assert files == kept_files, f"still there: {sorted(files - kept_files)}"
        assert not upload.parent.exists()
        assert folders == {str(Path(name).parent) for name in kept_files} | {IMAGE_FOLDER}
        assert [label["label"] for label in classify(api, dog)[1:4]] == ["dog"] * 3  # still serving
