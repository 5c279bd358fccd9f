"""Visitors who leave and visitors who stay: what the server keeps of a session, and for how long.

A session is released once it has been idle for the file retention, or once its page has
closed, whichever comes first (``webapp.sessions``). In process, the release is checked on
Gradio's own session store; over HTTP, `python app.py` runs with a retention of a few seconds
and a session's state is seen through /gradcam, which explains the session's last classified
image (nothing, once the session has been released); in Chromium, a visitor who idles for
less than the retention finds the image, the Grad-CAM layer and the Mistakes filters as they
were.
"""

import asyncio
import datetime
import gc
import platform
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import pytest
from gradio.state_holder import SessionState, StateHolder
from gradio_client import Client, handle_file

from tests.app_server import Server, app_server
from tests.conftest import DATA_URL
from webapp import sessions
from webapp.layout import build_demo
from webapp.sessions import LeanSessionState, release_interval, release_sessions

RETENTION = 8  # seconds, for the server tests; long enough for a slow shared CPU to answer in between
# The browser test's server keeps sessions longer: Gradio dates a session's last use from the start of its
# last event, and on a busy CPU a page's event (48 tiles drawn, sent and fetched) and the next one's way to
# the server can take several seconds each, on top of the visitor's idle time.
BROWSER_RETENTION, BROWSER_IDLE = 30, 10
LEFT = 8  # sessions that classify once and are then left idle
LAST_LAYER, OPACITY, TOP_CLASS = 4, 0.5, -1


# ---- in process: Gradio's session store --------------------------------------------------------


def test_idle_and_closed_sessions_are_released_and_active_ones_kept() -> None:
    released_values = []
    with gr.Blocks() as demo:
        state = gr.State(delete_callback=released_values.append)
    holder = StateHolder()
    holder.set_blocks(demo)
    now = datetime.datetime.now()
    ages = {"active": 1, "almost": 9, "idle": 11, "long-gone": 3000, "closed": 1}
    for name, age in ages.items():
        holder[name][state._id] = f"{name}'s image"
        holder.time_last_used[name] = now - datetime.timedelta(seconds=age)
    holder.session_data["closed"].is_closed = True

    assert release_sessions(holder, retention=10, now=now) == 3
    assert set(holder.session_data) == set(holder.time_last_used) == {"active", "almost"}
    assert sorted(released_values) == ["closed's image", "idle's image", "long-gone's image"]
    assert holder["almost"][state._id] == "almost's image"
    assert release_sessions(holder, retention=10, now=now) == 0


def test_the_memory_of_released_sessions_is_handed_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freed sessions leave holes in the heap that the allocator keeps unless asked: a sweep that released
    sessions asks, once; one that released none does not."""
    trims = []
    monkeypatch.setattr(sessions, "return_freed_memory", lambda: trims.append(1) or True)
    with gr.Blocks() as demo:
        state = gr.State()
    holder = StateHolder()
    holder.set_blocks(demo)
    now = datetime.datetime.now()
    for name, age in {"idle": 60, "gone": 90, "active": 1}.items():
        holder[name][state._id] = name
        holder.time_last_used[name] = now - datetime.timedelta(seconds=age)
    assert asyncio.run(sessions.sweep(holder, retention=10)) == 2 and len(trims) == 1
    assert asyncio.run(sessions.sweep(holder, retention=10)) == 0 and len(trims) == 1
    assert set(holder.session_data) == {"active"}
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        monkeypatch.undo()
        assert sessions._MALLOC_TRIM is not None  # found where it exists


def test_start_ups_objects_are_frozen_out_of_the_collectors_way() -> None:
    held = [[index] for index in range(1000)]  # objects made at start-up, tracked by the collector
    try:
        sessions.freeze_start_up()
        assert gc.get_freeze_count() >= len(held)
        assert len(gc.get_objects()) < gc.get_freeze_count()  # a collection walks less than what start-up made
    finally:
        gc.unfreeze()


def test_a_lean_session_has_every_attribute_of_gradios_own() -> None:
    with gr.Blocks() as demo:
        gr.State()
        gr.Textbox()
    assert set(vars(LeanSessionState(demo))) == set(vars(SessionState(demo)))
    assert len(SessionState(demo).config_values) >= 2 and LeanSessionState(demo).config_values == {}


def test_a_session_keeps_its_values_but_no_copy_of_the_page(checkpoint_dir: Path) -> None:
    """The app's sessions hold the classified image (Grad-CAM explains it), not every component's settings."""
    demo = build_demo(checkpoint_dir)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        api = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        classify(api, checkpoint_dir / "examples" / "ship.png")
        assert explained(api) == looks_for("ship")
        (session,) = demo.server_app.state_holder.session_data.values()
        assert isinstance(session, LeanSessionState) and session.config_values == {}
        pixels = [value for value in session.state_data.values() if getattr(value, "shape", None) == (32, 32, 3)]
        assert len(pixels) == 1
    finally:
        demo.close()


def test_sessions_are_looked_for_often_enough_for_the_retention() -> None:
    assert release_interval(3600) == 10 and release_interval(8) == 1 and release_interval(0.5) == 1
    assert release_interval(RETENTION) <= RETENTION / 4  # the server tests below rely on this margin


# ---- over HTTP -------------------------------------------------------------------------------


@contextmanager
def server_with_retention(retention: float, checkpoint_dir: Path, folder: Path) -> Iterator[Server]:
    # Heartbeats every half second, so that a closed client is noticed at once.
    env = {"CHECKPOINT_DIR": str(checkpoint_dir), "GRADIO_TEMP_DIR": str(folder / "gradio"),
           "GRADIO_HEARTBEAT_INTERVAL": "0.5"}
    with app_server(folder / "app.log", args=("--file-retention", str(retention)), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server_with_retention(RETENTION, checkpoint_dir, tmp_path_factory.mktemp("visitors-server")) as running:
        yield running


def client(server: Server) -> Client:
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False)


def classify(api: Client, path: Path) -> float:
    """Classify ``path`` in the client's session; the moment the answer came."""
    result = api.predict(handle_file(str(path)), "crop", 3, api_name="/classify")
    assert result[1]["label"], result
    return time.monotonic()


def explained(api: Client) -> list[str | None]:
    """What each Grad-CAM map explains for the session's last image; [None, None, None] when it holds none."""
    *cams, note = api.predict(LAST_LAYER, OPACITY, TOP_CLASS, api_name="/gradcam")
    if not all(isinstance(cam, str) and DATA_URL in cam for cam in cams):
        return [None] * len(cams)
    return note.split(" · ")


def looks_for(name: str) -> list[str]:
    return [f"Where {title} looks for “{name}”" for title in ("BatchNorm", "GroupNorm", "LayerNorm")]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_sessions_left_or_closed_are_released_and_an_active_one_is_kept(server: Server,
                                                                        checkpoint_dir: Path) -> None:
    examples = checkpoint_dir / "examples"
    with ThreadPoolExecutor(8) as pool:
        left = list(pool.map(lambda _: client(server), range(LEFT)))
    active, idle, closed = client(server), client(server), client(server)

    # Everyone classifies; the active visitor then keeps using Grad-CAM, well within the retention.
    with ThreadPoolExecutor(LEFT) as pool:
        left_done = max(pool.map(lambda api: classify(api, examples / "dog.png"), left))
    idle_done = classify(idle, examples / "cat.png")
    classify(closed, examples / "ship.png")
    classify(active, examples / "horse.png")
    closed_hash = closed.session_hash
    closed.close()  # the page closes: its heartbeat connection ends
    closed_at = time.monotonic()

    stop, active_answers = threading.Event(), []

    def keep_using() -> None:
        while not stop.wait(RETENTION / 4):
            active_answers.append(explained(active))

    user = threading.Thread(target=keep_using)
    user.start()
    try:
        # Half the retention later: the closed page's session is gone, the idle one is still there.
        sleep_until(max(closed_at, idle_done) + RETENTION / 2)
        probe = client(server)
        probe.session_hash = closed_hash
        assert explained(probe) == [None] * 3, "the closed page's session was kept"
        assert explained(idle) == looks_for("cat"), "a session idle for half the retention lost its image"

        # The retention and two looks later: every left session is gone; the active one kept its image.
        sleep_until(left_done + RETENTION + 2 * release_interval(RETENTION) + 1)
        with ThreadPoolExecutor(LEFT) as pool:
            after = list(pool.map(explained, left))
        assert after == [[None] * 3] * LEFT, f"{sum(a != [None] * 3 for a in after)} left sessions were kept"
    finally:
        stop.set()
        user.join()
    assert len(active_answers) >= 4 and all(answer == looks_for("horse") for answer in active_answers)
    assert explained(active) == looks_for("horse")
    # The server still serves the visitors who left, in fresh sessions.
    classify(left[0], examples / "dog.png")
    assert explained(left[0]) == looks_for("dog")


# ---- in a browser: a visitor who idles for less than the retention -----------------------------


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown labelled ``label``."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_a_visitor_idle_for_less_than_the_retention_finds_everything_as_it_was(
        checkpoint_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.test_app_server import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package or set CHROMIUM_PATH")
    first_block = "block 1 · 3×3 conv + pool · 24 ch at 16×16"
    with server_with_retention(BROWSER_RETENTION, checkpoint_dir, tmp_path) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url)
            # Classify: an example (served from Gradio's copy of it), and Grad-CAM of its first block.
            examples = sorted(path.stem for path in (checkpoint_dir / "examples").glob("*.png"))
            page.locator("button.gallery-item").nth(examples.index("ship")).click()
            expect(page.get_by_text("Where LayerNorm looks for “ship”")).to_be_visible(timeout=60_000)
            choose(page, "Layer", first_block)
            # Mistakes: LayerNorm's mistakes that BatchNorm gets right (choices that only this session has).
            page.get_by_role("tab", name="Mistakes").click()
            page.get_by_role("radio", name="LayerNorm").click()
            last_event_sent = time.monotonic()  # the server dates the session's last use no earlier than this
            choose(page, "Other models", "BN right, LN wrong")
            summary = page.get_by_text("test images: BN right, LN wrong")
            expect(summary).to_be_visible(timeout=30_000)

            time.sleep(BROWSER_IDLE)

            # Back on Mistakes: one more filter on top of the others, then a tile.
            choose(page, "True class", "cat")
            try:
                expect(page.get_by_text("test images: BN right, LN wrong, true class cat")).to_be_visible(
                    timeout=30_000)
            except AssertionError as error:
                raise AssertionError(
                    f"no filtered mistakes {time.monotonic() - last_event_sent:.0f} s after the last event before the "
                    f"idle time was sent (sessions are kept for {BROWSER_RETENTION} s)") from error
            # The idle time as the server saw it was at most this: the test means something only under the retention.
            assert time.monotonic() - last_event_sent < BROWSER_RETENTION - release_interval(BROWSER_RETENTION)
            page.locator(".mistake-gallery .thumbnail-item").first.click()
            expect(page.get_by_text("Test image #")).to_be_visible(timeout=30_000)
            # Back on Classify: the same image and layer, explained for another class.
            page.get_by_role("tab", name="Classify").click()
            expect(page.get_by_label("Layer", exact=True)).to_have_value(first_block)
            choose(page, "Explain the class", "cat")
            expect(page.get_by_text("Where LayerNorm looks for “cat”")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
