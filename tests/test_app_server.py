"""The app as people and programs meet it: `python app.py` on a free loopback port, called through
gradio_client (one client, then 32 at once) and through a real headless Chromium.

Runs on the shipped checkpoints (or the folder named by CHECKPOINT_DIR). The browser is Debian's
`chromium` (override with CHROMIUM_PATH); Playwright drives it without downloading one.
"""

import io
import json
import os
import re
import socket
import struct
import threading
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageOps

from model import NORMS
from tests.app_server import ROOT, Server, app_server
from webapp.inference import load_bank
from webapp.preprocess import prepare

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
UPLOAD_CAP_MB = 5


@pytest.fixture(scope="module")
def examples(checkpoint_dir: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted((checkpoint_dir / "examples").glob("*.png"))}


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("server") / "app.log"
    env = {"CHECKPOINT_DIR": str(checkpoint_dir), "MAX_UPLOAD_SIZE": f"{UPLOAD_CAP_MB}mb"}
    with app_server(log, env=env) as running:  # binds to the default address: what is under test
        yield running


def client(server: Server) -> Client:
    return Client(server.url, verbose=False, download_files=False, analytics_enabled=False)


def classify(api: Client, path: Path | str, top_k: int = 3) -> tuple:
    return api.predict(handle_file(str(path)), "crop", top_k, api_name="/classify")


def top_classes(result: tuple) -> list[str]:
    return [label["label"] for label in result[1:4]]


def test_host_comes_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert app.parse_args([]).host == "127.0.0.1"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what Hugging Face Spaces sets
    assert app.parse_args([]).host == "0.0.0.0"
    assert app.parse_args(["--host", "127.0.0.1"]).host == "127.0.0.1"


def test_the_app_launches_without_a_share_link(monkeypatch: pytest.MonkeyPatch, checkpoint_dir: Path) -> None:
    import gradio as gr

    import app

    launched = []
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.append(options))
    assert app.main(["--checkpoint-dir", str(checkpoint_dir), "--port", "7999"]) == 0
    [options] = launched
    assert options["share"] is False and options["server_name"] == "127.0.0.1" and options["server_port"] == 7999


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port``, from the kernel's own table."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's table of listening sockets")
def test_binds_to_loopback_by_default(server: Server) -> None:
    assert f"http://127.0.0.1:{server.port}" in server.log.read_text()
    assert listening_addresses(server.port) == {"127.0.0.1"}


def test_api_classifies_confident_examples(server: Server, examples: dict[str, Path]) -> None:
    api = client(server)
    for name in ("airplane", "frog", "truck"):
        result = classify(api, examples[name], top_k=10)
        assert top_classes(result) == [name] * 3, f"{name}: {top_classes(result)}"
        for label in result[1:4]:
            confidences = [entry["confidence"] for entry in label["confidences"]]
            assert len(confidences) == 10 and abs(sum(confidences) - 1) < 1e-3
        assert "All three models say" in result[5]


def test_api_inside_returns_every_panel_and_refuses_a_missing_layer(server: Server,
                                                                    examples: dict[str, Path]) -> None:
    api = client(server)
    returns = api.view_api(return_format="dict", print_info=False)["named_endpoints"]["/inside"]["returns"]
    assert [entry["label"] for entry in returns][1:4] == [f"{NORMS[norm].title}: summary" for norm in NORMS]
    result = api.predict(handle_file(str(examples["frog"])), 1, api_name="/inside")
    assert len(result) == len(returns) == 17
    assert result[0].startswith("**Normalization layer 2 of") and result[1].startswith("**BatchNorm**")
    assert set(result[-1]["models"]) == set(NORMS) and result[-1]["layer"]["index"] == 1
    with pytest.raises(AppError, match="no normalization layer 99"):
        api.predict(handle_file(str(examples["frog"])), 99, api_name="/inside")


def decompression_bomb(side: int = 30_000) -> bytes:
    """A valid side x side 1-bit PNG of zeros: ~100 kB to upload, 900 megapixels to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_uploads(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error message must contain)."""
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    files = {
        "notes.txt": (b"not a picture at all", "not an image"),
        "empty.png": (b"", "empty"),
        "truncated.png": (buffer.getvalue()[:2000], "truncated or corrupt"),
        "bomb.png": (decompression_bomb(), "too large"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: (folder / name, phrase) for name, (_, phrase) in files.items()}


def test_api_bad_files_give_errors_and_the_next_call_works(server: Server, examples: dict[str, Path],
                                                          tmp_path: Path) -> None:
    api = client(server)
    for name, (path, phrase) in bad_uploads(tmp_path).items():
        with pytest.raises(AppError, match=phrase):
            classify(api, path)
        assert top_classes(classify(api, examples["ship"])) == ["ship"] * 3, f"after {name}"


def test_server_files_cannot_be_named_instead_of_uploaded(server: Server, examples: dict[str, Path]) -> None:
    # A real image on the server, but not an upload: Gradio must refuse to hand its path to the app.
    url = f"{server.url}/gradio_api/call/classify"
    for value in ({"path": str(examples["cat"]), "meta": {"_type": "gradio.FileData"}}, str(examples["cat"])):
        body = json.dumps({"data": [value, "crop", 3]}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            event = json.load(response)["event_id"]
        with urllib.request.urlopen(f"{url}/{event}", timeout=60) as response:
            stream = response.read().decode()
        assert "event: error" in stream and "confidences" not in stream


def test_upload_size_is_capped(server: Server, examples: dict[str, Path], tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    big.write_bytes(os.urandom((UPLOAD_CAP_MB + 1) * 1024 * 1024))
    # The server refuses it while it streams in: 413 Payload Too Large, whatever the client.
    with big.open("rb") as upload:
        response = httpx.post(f"{server.url}/gradio_api/upload", files={"files": ("huge.png", upload, "image/png")},
                              timeout=120)
    assert response.status_code == 413 and "maximum allowed size" in response.text
    # gradio_client reads the cap from the page's configuration and does not even send it.
    api = client(server)
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {UPLOAD_CAP_MB * 1024 * 1024} bytes"):
        classify(api, big)
    assert top_classes(classify(api, examples["cat"])) == ["cat"] * 3


def test_32_concurrent_clients_each_get_their_own_answer(server: Server, examples: dict[str, Path],
                                                         checkpoint_dir: Path, tmp_path: Path) -> None:
    # 32 different inputs: the ten examples, mirrored, darkened and shrunk, so a mixed-up reply shows.
    variants = [lambda im: im, ImageOps.mirror, lambda im: im.point(lambda v: int(v * 0.6)), lambda im: im.rotate(90)]
    inputs = []
    for i in range(32):
        path = tmp_path / f"input{i}.png"
        variants[i // 10](Image.open(examples[sorted(examples)[i % 10]]).convert("RGB")).save(path)
        inputs.append(path)
    bank = load_bank(checkpoint_dir)
    expected = []
    for path in inputs:
        probabilities = bank.predict(prepare(path)[0]).probabilities
        expected.append({norm: (bank.classes[int(p.argmax())], float(p.max())) for norm, p in probabilities.items()})

    clients = list(ThreadPoolExecutor(8).map(lambda _: client(server), range(32)))
    start = threading.Barrier(32)

    def call(i: int) -> tuple:
        start.wait()
        return classify(clients[i], inputs[i])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    for i, result in enumerate(results):
        for norm, label in zip(NORMS, result[1:4], strict=True):
            want_class, want_confidence = expected[i][norm]
            assert label["label"] == want_class, f"input {i}, {norm}"
            assert abs(label["confidences"][0]["confidence"] - want_confidence) < 1e-4, f"input {i}, {norm}"


def test_browser_upload_fills_the_three_panels(server: Server, examples: dict[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package or set CHROMIUM_PATH")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            page.goto(server.url)
            page.locator("#input-image input[type=file]").set_input_files(str(examples["ship"]))
            headings = page.locator("[data-testid='label-output-value']")
            expect(headings).to_have_count(3, timeout=60_000)
            for i in range(3):
                expect(headings.nth(i)).to_have_text("ship", timeout=30_000)
            expect(page.locator("[data-testid$='-confidence-set']")).to_have_count(9)  # top 3 for each model
            expect(page.get_by_text("All three models say")).to_be_visible()
            expect(page.get_by_text("Where LayerNorm looks for")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "classify.png"), full_page=True)

            page.get_by_role("tab", name="Mistakes").click()
            tiles = page.locator(".mistake-gallery .thumbnail-item")
            expect(tiles.first).to_be_visible(timeout=30_000)
            tiles.first.click()
            expect(page.get_by_text("Test image #")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "mistakes.png"), full_page=True)

            page.get_by_role("tab", name="Training").click()
            expect(page.get_by_text("What the three normalizations compute")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "training.png"), full_page=True)

            page.get_by_role("tab", name="Lab").click()
            # The ship uploaded above is now the Lab's image; BN in train mode is one of the plotted lines.
            expect(page.get_by_text("Global scaling to the mean, severity 3")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("BatchNorm (train mode):")).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Draw new companions").click()
            expect(page.get_by_text("What we measured")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "lab.png"), full_page=True)

            page.get_by_role("tab", name="Inside the norms").click()
            page.get_by_label("Normalization layer (in the order the network runs them)").click()
            page.get_by_role("option", name=re.compile(r"^norm layer 2 ")).click()
            expect(page.get_by_text("Normalization layer 2 of")).to_be_visible(timeout=30_000)
            # The three panels fill: each model's facts, feature maps and pictures of its sets and statistics.
            for title in ("BatchNorm", "GroupNorm", "LayerNorm"):
                expect(page.get_by_text(f"{title}: one mean and variance per")).to_be_visible(timeout=30_000)
            expect(page.locator(".inside-maps img")).to_have_count(3, timeout=30_000)
            for picture in ("the values that share one mean", "the statistics used", "the distribution of values"):
                expect(page.locator("svg > title", has_text=picture)).to_have_count(3)
            expect(page.get_by_text("channel 1 of your image")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "inside.png"), full_page=True)
            assert console_errors == []
        finally:
            browser.close()
