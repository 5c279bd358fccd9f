"""How fast the app answers: in process, through the HTTP API, and from a cold start.

    python benchmarks/app_latency.py                  # everything, on checkpoints/
    python benchmarks/app_latency.py --skip-http      # in-process numbers only
    python benchmarks/app_latency.py --server-work    # CPU per handler call, and a session's size

Prints medians and 95th percentiles in milliseconds. In process: the three models on one
image's 32x32 pixels (beside the same with the standardized filters computed anew at every
call, taking turns), the whole classification of an uploaded file (decode, resize, three
models), Grad-CAM for the three models, and the Inside tab's update (a norm layer of each of
the three models, every panel drawn) beside the Classify tab's whole handler, taking turns.
`--server-work` prints what the server itself does for one visitor, in process: the CPU time
(``time.process_time``) of each handler an API call runs, per kind of input, with every picture
encoded anew; the memory a session holds (Python's allocations, traced), as Gradio makes it
and as the app makes it (``webapp.sessions.LeanSessionState``); and how long a full collection of
Python's cyclic garbage collector takes, with and without start-up's objects frozen.
Over HTTP: `python app.py` is started on a free loopback port; start-up is timed from process
start to the first answer, then one client calls /classify repeatedly (through gradio_client,
and through plain HTTP requests for comparison), then 32 gradio_client clients call it at the
same time.
"""

import argparse
import contextlib
import gc
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def summary(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms   (n={len(ms)})"


def timed(function, runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def photo(width: int, height: int) -> bytes:
    """A JPEG with smooth gradients and noise, so it compresses and decodes like a photo."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def in_process(checkpoint_dir: Path, runs: int, threads: int) -> None:
    import torch

    from webapp.gradcam import grad_cam, overlay
    from webapp.inference import load_bank
    from webapp.preprocess import prepare

    torch.set_num_threads(threads)
    start = time.perf_counter()
    bank = load_bank(checkpoint_dir)
    print(f"loading the {len(bank.models)} models: {1000 * (time.perf_counter() - start):.0f} ms "
          f"(torch {torch.__version__}, {threads} thread{'s' if threads > 1 else ''})")
    if bank.problems:
        print("unavailable:", bank.problems)
    example = sorted((checkpoint_dir / "examples").glob("*.png"))[0]
    uploads = {
        f"{example.name} (32x32 PNG)": example.read_bytes(),
        "1024x768 JPEG": photo(1024, 768),
        "4032x3024 JPEG (12 MP)": photo(4032, 3024),
    }
    pixels = prepare(uploads[f"{example.name} (32x32 PNG)"])[0]
    print(f"\nthree models, one image's 32x32 pixels:          {summary(timed(lambda: bank.predict(pixels), runs))}")
    kept_beside_recomputed(bank, pixels, runs)
    for name, data in uploads.items():
        count = runs if len(data) < 1_000_000 else max(runs // 5, 10)
        times = timed(lambda data=data: bank.predict(prepare(data)[0]), count, warmup=3)
        print(f"whole classification of an upload, {name:>24}: {summary(times)}")

    def cams() -> None:
        for loaded in bank.models.values():
            last = len(loaded.network.features) - 1
            cam, _ = grad_cam(loaded.network, loaded.input(pixels), last)
            overlay(pixels, cam, 0.5)

    print(f"Grad-CAM + overlay for all three models (last layer): {summary(timed(cams, max(runs // 2, 10)))}")
    inside_beside_classify(checkpoint_dir, max(runs // 2, 10))


def kept_beside_recomputed(bank: Any, pixels: np.ndarray, runs: int) -> None:
    """The three models on one image with their standardized filters kept between calls (as served) and computed
    anew at every call (as every call did before they were kept), taking turns."""
    from model.network import StandardizedConv2d, standardize_filters

    convs = [m for loaded in bank.models.values() for m in loaded.network.modules()
             if isinstance(m, StandardizedConv2d)]
    if not convs:
        return

    def recomputed() -> None:
        for conv in convs:  # an instance attribute shadows the method that keeps the filters
            conv.standardized_weight = lambda conv=conv: standardize_filters(conv.weight)
        try:
            bank.predict(pixels)
        finally:
            for conv in convs:
                del conv.standardized_weight

    times = interleaved({"kept": lambda: bank.predict(pixels), "recomputed": recomputed}, runs)
    kept, anew = (float(np.median(times[name])) for name in ("kept", "recomputed"))
    print(f"  standardized filters kept (served):           {summary(times['kept'])}")
    print(f"  the same, filters computed anew at each call: {summary(times['recomputed'])}   "
          f"{anew / kept:.2f}x the kept filters' time")


def interleaved(functions: dict[str, object], runs: int, before_each=None, warmup: int = 3) -> dict[str, list[float]]:
    """Each function timed ``runs`` times, taking turns, so that a busy moment of the CPU hits them all.

    ``before_each`` runs, untimed, before every call.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            if before_each is not None:
                before_each()
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def inside_beside_classify(checkpoint_dir: Path, runs: int) -> None:
    """The Inside tab's whole update (three models, every panel) beside the Classify tab's whole handler.

    The app encodes each distinct picture once; here the folder of pictures is emptied before every
    call, so each one pays for its PNGs, as a new image or a first look at a layer does.
    """
    import itertools
    import shutil

    with gradio_folder() as folder:
        from webapp.layout import load_app
        from webapp.output_files import IMAGE_FOLDER, temporary_folder

        app = load_app(checkpoint_dir)
        inside, handlers = app.inside, app.handlers
        examples = sorted((checkpoint_dir / "examples").glob("*.png"))
        layers = itertools.cycle(range(len(inside.layers)))
        images = itertools.cycle(examples)
        middle = len(inside.layers) // 2
        jpeg = Path(folder) / "photo.jpg"
        jpeg.write_bytes(photo(1024, 768))
        times = interleaved({
            "Classify, whole handler, 32x32 PNG": lambda: handlers.classify(str(examples[0])),
            "Inside, the layer changes (32x32 PNG)": lambda: inside.show(str(examples[0]), next(layers)),
            "Inside, the image changes (ten examples)": lambda: inside.show(str(next(images)), middle),
            "Inside, the image changes (1024x768 JPEG)": lambda: inside.show(str(jpeg), middle),
        }, runs, before_each=lambda: shutil.rmtree(temporary_folder() / IMAGE_FOLDER, ignore_errors=True))
    base = float(np.median(times["Classify, whole handler, 32x32 PNG"]))
    print(f"\nInside the norms beside Classify, taking turns ({len(inside.layers)} norm layers, target 300 ms; "
          "every picture encoded anew):")
    for name, seconds in times.items():
        print(f"  {name:<42} {summary(seconds)}   {np.median(seconds) / base:5.1f}x Classify")


@contextlib.contextmanager
def gradio_folder() -> Iterator[str]:
    """A scratch folder as Gradio's (GRADIO_TEMP_DIR) for the duration; the previous setting is put back."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["GRADIO_TEMP_DIR"] = folder
        try:
            yield folder
        finally:
            if previous is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = previous


def cpu_ms(function: Callable[[], object], runs: int, before_each: Callable[[], object] | None = None,
           warmup: int = 3) -> tuple[float, float]:
    """Median and 95th percentile of the CPU time (all of this process's threads) of ``function``, in ms."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        if before_each is not None:
            before_each()
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    ms = np.array(times) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 95))


def session_kb(make_session: Callable[[Any], object], demo: Any, sessions: int = 200) -> float:
    """Python's allocations per session of ``demo``, traced over ``sessions`` sessions made and kept."""
    import tracemalloc

    make_session(demo)  # the first one builds Gradio's shared caches
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [make_session(demo) for _ in range(sessions)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del kept
    return grown / sessions / 1024


def server_work(checkpoint_dir: Path, runs: int) -> None:
    """The handlers' own CPU per call and a session's size: what the server does that a do-nothing app does not."""
    import shutil

    import torch
    from PIL import Image

    torch.set_num_threads(1)  # as app.py serves
    with gradio_folder() as folder:
        from webapp.layout import build_demo, load_app
        from webapp.output_files import IMAGE_FOLDER, temporary_folder
        from webapp.sessions import LeanSessionState, SessionState, freeze_start_up

        handlers = load_app(checkpoint_dir).handlers
        example = sorted((checkpoint_dir / "examples").glob("*.png"))[0]
        png = Path(folder) / "640x480.png"
        Image.open(io.BytesIO(photo(640, 480))).save(png)
        uploads = {f"an example ({example.name}, 32x32 PNG)": example, "640x480 PNG": png}
        for width, height in ((1024, 768), (4032, 3024)):
            path = Path(folder) / f"{width}x{height}.jpg"
            path.write_bytes(photo(width, height))
            uploads[f"{width}x{height} JPEG"] = path
        fresh = lambda: shutil.rmtree(temporary_folder() / IMAGE_FOLDER, ignore_errors=True)  # noqa: E731
        print(f"\nThe server's own work, in process (CPU time per call; every picture encoded anew; "
              f"{runs} calls each):")
        for name, path in uploads.items():
            median, p95 = cpu_ms(lambda path=path: handlers.classify(str(path)),
                                 runs if path.stat().st_size < 1_000_000 else max(runs // 5, 10), fresh)
            print(f"  /classify, {name:<34} median {median:6.1f} ms   p95 {p95:6.1f} ms")
        pixels = handlers.classify(str(example))["pixels"]
        last = handlers.layers[-1].index
        median, p95 = cpu_ms(lambda: handlers.explain(pixels, last, 0.5, -1), runs, fresh)
        print(f"  /gradcam, three overlays (last layer)        median {median:6.1f} ms   p95 {p95:6.1f} ms")
        demo = build_demo(checkpoint_dir)
    gradios, lean = session_kb(SessionState, demo), session_kb(LeanSessionState, demo)
    print(f"\nA new session of this page ({len(demo.blocks)} blocks), Python's allocations traced: Gradio's own "
          f"{gradios:.1f} KB, the app's (no copy of every component's settings) {lean:.1f} KB")
    tracked = len(gc.get_objects())
    walking_all = full_collection_ms()
    freeze_start_up()  # as app.py does before serving
    walking_new = full_collection_ms()
    gc.unfreeze()
    print(f"A full collection of Python's cyclic garbage collector, every thread waiting while it runs, with the "
          f"page and the models loaded ({tracked:,} objects): {walking_all:.0f} ms; with start-up's objects "
          f"frozen, as app.py serves: {walking_new:.1f} ms (median of 5)")


def full_collection_ms(repeats: int = 5) -> float:
    """Median wall time of ``gc.collect()`` (all generations), in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rest_caller(url: str, example: str):
    """One classification through Gradio's REST API with httpx, without gradio_client.

    gradio_client checks for new messages every 50 ms; this shows how much of its latency is the server's.
    """
    import httpx

    session = httpx.Client(timeout=60)

    def call() -> None:
        with open(example, "rb") as handle:
            path = session.post(f"{url}/gradio_api/upload", files={"files": handle}).json()[0]
        data = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "crop", 3, "single"]}
        event = session.post(f"{url}/gradio_api/call/classify", json=data).json()["event_id"]
        if "event: complete" not in session.get(f"{url}/gradio_api/call/classify/{event}").text:
            raise RuntimeError("the classification failed")

    return call


def http(checkpoint_dir: Path, sequential: int, clients: int, per_client: int, concurrency: int) -> None:
    from gradio_client import Client, handle_file

    example = str(sorted((checkpoint_dir / "examples").glob("*.png"))[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHECKPOINT_DIR": str(checkpoint_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("GRADIO_SERVER_NAME", None)
    log = tempfile.TemporaryFile()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--concurrency", str(concurrency)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def connect() -> Client:
        return Client(url, verbose=False, download_files=False, analytics_enabled=False)

    def call(api: Client) -> None:
        api.predict(handle_file(example), "crop", 3, api_name="/classify")

    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise SystemExit(f"the app exited:\n{log.read().decode(errors='replace')}")
            try:
                api = connect()
                call(api)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        print(f"\nstart-up, `python app.py` to the first /classify answer: {time.perf_counter() - started:.1f} s")

        print(f"one client, {sequential} calls in a row:        {summary(timed(lambda: call(api), sequential, 5))}")
        rest = rest_caller(url, example)
        print(f"the same over plain HTTP (upload + /call + result): {summary(timed(rest, sequential, 5))}")

        pool_clients = list(ThreadPoolExecutor(8).map(lambda _: connect(), range(clients)))
        latencies: list[float] = []
        lock, barrier = threading.Lock(), threading.Barrier(clients)

        def client_loop(i: int) -> None:
            barrier.wait()
            for _ in range(per_client):
                start = time.perf_counter()
                call(pool_clients[i])
                with lock:
                    latencies.append(time.perf_counter() - start)

        cpu_before, start = cpu_seconds(process.pid), time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client_loop, range(clients)))
        elapsed = time.perf_counter() - start
        server_cpu = cpu_seconds(process.pid) - cpu_before
        print(f"{clients} clients at once, {per_client} calls each: {summary(latencies)}")
        print(f"throughput: {len(latencies) / elapsed:.1f} classifications/s "
              f"({len(latencies)} in {elapsed:.1f} s; server concurrency {concurrency}; the server used "
              f"{1000 * server_cpu / len(latencies):.0f} ms of CPU per classification, the clients the rest)")

        rest_callers = [rest_caller(url, example) for _ in range(clients)]
        latencies.clear()
        barrier = threading.Barrier(clients)

        def rest_loop(i: int) -> None:
            barrier.wait()
            for _ in range(per_client):
                start = time.perf_counter()
                rest_callers[i]()
                with lock:
                    latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(rest_loop, range(clients)))
        elapsed = time.perf_counter() - start
        print(f"the same over plain HTTP:             {summary(latencies)}")
        print(f"throughput: {len(latencies) / elapsed:.1f} classifications/s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint-dir", type=Path,
                        default=Path(os.environ.get("CHECKPOINT_DIR", ROOT / "checkpoints")))
    parser.add_argument("--runs", type=int, default=200, help="timed repetitions in process")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads in process (the app uses 1)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--server-work", action="store_true",
                        help="only the handlers' CPU per call and a session's size, in process")
    parser.add_argument("--sequential", type=int, default=100, help="calls in a row from one client")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=10, help="calls per concurrent client")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}; load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.server_work:
        server_work(args.checkpoint_dir, args.runs)
        return
    in_process(args.checkpoint_dir, args.runs, args.threads)
    if not args.skip_http:
        http(args.checkpoint_dir, args.sequential, args.clients, args.per_client, args.concurrency)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
