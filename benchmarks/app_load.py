"""The app under a crowd, beside the framework's floor: failures, latency, throughput, memory and disk.

    python benchmarks/app_load.py                          # 32 clients for 1 minute on each server
    python benchmarks/app_load.py --clients 64 --minutes 10 --requests 5000
    python benchmarks/app_load.py --visitors 20000         # 20,000 visitors, one classification each

K gradio_client clients (each a visitor of its own) call the server at the same time for M
minutes (or until --requests calls), with a mix of what visitors do: click an example (the
same ten images for everyone), upload a photo (32x32 PNG up to a 12-megapixel JPEG), upload a
bad file (text named .png, an empty file: the app must answer with its own error message,
which counts as expected), and ask for Grad-CAM (/gradcam after /classify, on the same
client). Each client draws the same sequence of actions on both servers.

Two servers run, one after the other, each `python` process on a free loopback port with its
own Gradio temporary folder: `python app.py`, then `benchmarks/floor_app.py` (one image input,
one label output, no model, the app's queue settings), which gets the same images and bad files,
with a plain classification in place of each Grad-CAM call.

The app's answers carry their pictures inside them (the preview and the Grad-CAM maps, as PNG
``data:`` URLs), so a client has nothing more to download; each answer is checked for them.

Prints, for each server: failures, p50 and p95 latency, throughput, the server's resident
memory and temporary folder at start and end, and the server's own CPU time per call; then the
app's ratios to the floor beside the targets.

With ``--visitors N``, N visitors come one after another on each of --clients connections
(default 8 in this mode), each in a new session, as each browser tab is: a visitor classifies
one example (its preview comes inside the answer), and leaves (the connection starts the next visitor's session,
as a new tab would). The app runs with ``--file-retention`` set to ``--retention`` (default 60
s), so the sessions of visitors who left are released while the run goes on; the floor keeps
Gradio's defaults. Every 1,000 visitors it prints each server's resident memory; at the end,
the memory per visitor and the server's CPU time per classification, against the floor's.
"""

import argparse
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app import DEFAULT_CONCURRENCY as APP_CONCURRENCY  # noqa: E402 - the project root is on the path only now

START_TIMEOUT = 300  # seconds for a server to answer its first request
# The server drops a connection idle for 5 s (uvicorn's default); a client that reused one just then
# would see it reset. Browsers retire idle connections first; so do the visitors' connections here.
KEEPALIVE_SECONDS = 2.0
LAST_LAYER, OPACITY, TOP_CLASS = 4, 0.5, -1  # the Grad-CAM call: last block, half opacity, each model's top class
# Targets of the app against the floor, and for its memory.
P50_TARGET, THROUGHPUT_TARGET, RSS_TARGET_MB, RSS_TARGET_REQUESTS = 1.15, 0.85, 50, 5000
CPU_TARGET = 1.5  # the server's CPU time per call, against the floor's
# Visitors: memory per visitor against the floor's, and the growth allowed after the first 1,000 visitors.
VISITOR_MEMORY_TARGET, VISITOR_GROWTH_TARGET_MB, VISITORS_PER_REPORT = 2.0, 150, 1000

# What a visitor does, and how often (weights sum to 100).
MIX = {"example": 40, "upload": 30, "bad file": 10, "gradcam": 20}
UPLOADS = {  # name -> (width, height, format); the 12-megapixel photo is the rarest
    "32x32.png": (32, 32, "PNG"),
    "640x480.png": (640, 480, "PNG"),
    "1024x768.jpg": (1024, 768, "JPEG"),
    "4032x3024.jpg": (4032, 3024, "JPEG"),
}
UPLOAD_WEIGHTS = (10, 8, 8, 4)
BAD_FILES = {"notes.png": (b"these are notes, not a picture\n", "not an image"), "empty.png": (b"", "empty")}


# ---- inputs -----------------------------------------------------------------------------------


def photo(width: int, height: int, image_format: str) -> bytes:
    """Smooth gradients plus noise, so the file compresses and decodes like a photo."""
    from PIL import Image

    rng = np.random.default_rng(width * height)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


@dataclass
class Inputs:
    examples: list[Path]
    uploads: list[Path]
    bad_files: dict[Path, str]  # file -> a phrase the app's error message contains


def make_inputs(folder: Path, checkpoint_dir: Path) -> Inputs:
    examples = sorted((checkpoint_dir / "examples").glob("*.png"))
    if not examples:
        raise SystemExit(f"no example images in {checkpoint_dir / 'examples'}: run `python -m training` first")
    uploads = []
    for name, (width, height, image_format) in UPLOADS.items():
        uploads.append(folder / name)
        uploads[-1].write_bytes(photo(width, height, image_format))
    bad_files = {}
    for name, (data, phrase) in BAD_FILES.items():
        (folder / name).write_bytes(data)
        bad_files[folder / name] = phrase
    return Inputs(examples, uploads, bad_files)


@dataclass(frozen=True)
class Action:
    kind: str  # a key of MIX
    path: Path
    expected_error: str | None = None  # for a bad file: a phrase its error must contain ("" for any error)


def actions(inputs: Inputs, seed: int) -> Callable[[], Action]:
    """An endless, reproducible sequence of visitor actions for one client."""
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())

    def next_action() -> Action:
        kind = rng.choices(kinds, weights)[0]
        if kind == "upload":
            return Action(kind, rng.choices(inputs.uploads, UPLOAD_WEIGHTS)[0])
        if kind == "bad file":
            path = rng.choice(sorted(inputs.bad_files))
            return Action(kind, path, inputs.bad_files[path])
        return Action(kind, rng.choice(inputs.examples))

    return next_action


# ---- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    """A server's resident memory, CPU time and temporary folder at one moment, and this process's CPU time."""

    rss_mb: float
    files: int
    folder_mb: float
    server_cpu: float
    client_cpu: float

    def __str__(self) -> str:
        return f"RSS {self.rss_mb:.0f} MB, temporary folder {self.files} files, {self.folder_mb:.1f} MB"


def snapshot(pid: int, folder: Path) -> Snapshot:
    sizes = [path.stat().st_size for path in folder.rglob("*") if path.is_file()]
    return Snapshot(rss_mb(pid), len(sizes), sum(sizes) / 1e6, cpu_seconds(pid), time.process_time())


@dataclass
class Server:
    name: str
    command: list[str]
    temp_dir: Path
    log: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, checkpoint_dir: Path) -> None:
        self.port = free_port()
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GRADIO_TEMP_DIR": str(self.temp_dir), "GRADIO_ANALYTICS_ENABLED": "False",
               "CHECKPOINT_DIR": str(checkpoint_dir)}
        env.pop("GRADIO_SERVER_NAME", None)
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen([*self.command, "--port", str(self.port)], cwd=ROOT, env=env,
                                            stdout=output, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        import urllib.request

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"{self.name} did not answer within {START_TIMEOUT} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def snapshot(self) -> Snapshot:
        return snapshot(self.process.pid, self.temp_dir)


# ---- calls ------------------------------------------------------------------------------------


@dataclass
class Visitor:
    """One visitor: a gradio_client session."""

    api: Any  # gradio_client.Client


def check_inline_image(html: object) -> None:
    """The app's preview and Grad-CAM maps arrive inside the answer, as inline PNGs: nothing to download."""
    if not (isinstance(html, str) and "data:image/png;base64," in html):
        raise RuntimeError(f"no image in the answer: {str(html)[:200]!r}")


class Target:
    """How one server is called: the app's /classify and /gradcam, or the floor's /classify alone."""

    def __init__(self, is_app: bool) -> None:
        self.is_app = is_app

    def classify(self, visitor: Visitor, path: Path) -> None:
        from gradio_client import handle_file

        if self.is_app:
            result = visitor.api.predict(handle_file(str(path)), "crop", 3, api_name="/classify")
            check_inline_image(result[0])
            if not all(isinstance(label, dict) and label.get("label") for label in result[1:4]):
                raise RuntimeError(f"labels missing: {result[1:4]!r}")
        else:
            result = visitor.api.predict(handle_file(str(path)), api_name="/classify")
            if not (isinstance(result, dict) and result.get("label")):
                raise RuntimeError(f"label missing: {result!r}")

    def gradcam(self, visitor: Visitor, path: Path) -> None:
        if not self.is_app:
            self.classify(visitor, path)  # the floor has no Grad-CAM: the same call again
            return
        *cams, note = visitor.api.predict(LAST_LAYER, OPACITY, TOP_CLASS, api_name="/gradcam")
        for cam in cams:
            check_inline_image(cam)
        if not (isinstance(note, str) and note.count("looks for") == len(cams)):
            raise RuntimeError(f"the note of what each map explains is missing: {note!r}")


@dataclass
class Record:
    kind: str
    seconds: float
    outcome: str  # "ok", "expected error" or "failure: ..."


@dataclass
class Budget:
    """Stops every client at the deadline or after ``limit`` calls in all."""

    deadline: float
    limit: int | None
    used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        with self.lock:
            if time.monotonic() >= self.deadline or (self.limit is not None and self.used >= self.limit):
                return False
            self.used += 1
            return True


def timed_call(kind: str, call: Callable[[], None], expected_error: str | None = None) -> Record:
    from gradio_client.exceptions import AppError

    start = time.perf_counter()
    try:
        call()
        outcome = "ok" if expected_error is None else "failure: a bad file was accepted"
    except AppError as error:
        expected = expected_error is not None and expected_error in str(error)
        outcome = "expected error" if expected else f"failure: {error}"
    except Exception as error:  # noqa: BLE001 - every other exception is a failure, counted and shown
        outcome = f"failure: {type(error).__name__}: {error}"
    return Record(kind, time.perf_counter() - start, outcome)


def visit(target: Target, visitor: Visitor, action: Action, budget: Budget) -> list[Record]:
    """One visitor action: one or two calls."""
    if action.kind == "bad file":
        # The floor has no message of its own: Gradio's header check rejects the file with a generic error.
        phrase = action.expected_error if target.is_app else ""
        return [timed_call(action.kind, lambda: target.classify(visitor, action.path), phrase)]
    # Grad-CAM explains the client's last image: an example is classified first (counted as a click on it).
    records = [timed_call("example" if action.kind == "gradcam" else action.kind,
                          lambda: target.classify(visitor, action.path))]
    if action.kind == "gradcam" and budget.take():
        records.append(timed_call("gradcam", lambda: target.gradcam(visitor, action.path)))
    return records


WARM_UP_CALLS = len(UPLOADS) + 4  # the uploads, a bad file, an example, Grad-CAM (two calls)


def warm_up(target: Target, visitor: Visitor, inputs: Inputs, index: int) -> None:
    bad = sorted(inputs.bad_files)[index % len(inputs.bad_files)]
    example = inputs.examples[index % len(inputs.examples)]
    first = [Action("upload", upload) for upload in inputs.uploads]
    first += [Action("bad file", bad, inputs.bad_files[bad]), Action("gradcam", example)]
    for action in first:
        visit(target, visitor, action, Budget(float("inf"), None))


def run_load(target: Target, clients: list, inputs: Inputs, seconds: float, limit: int | None) -> tuple[list, float]:
    budget = Budget(time.monotonic() + seconds, limit)
    start_together = threading.Barrier(len(clients))

    def client_loop(index: int) -> list[Record]:
        next_action = actions(inputs, seed=index)
        records: list[Record] = []
        start_together.wait()
        while budget.take():
            records += visit(target, clients[index], next_action(), budget)
        return records

    start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        records = [record for batch in pool.map(client_loop, range(len(clients))) for record in batch]
    return records, time.perf_counter() - start


# ---- one server, then the report --------------------------------------------------------------


@dataclass
class Result:
    name: str
    records: list[Record]
    seconds: float
    warm: Snapshot  # after the warm-up, when the measured load starts
    end: Snapshot

    @property
    def latencies_ms(self) -> np.ndarray:
        return np.array([record.seconds for record in self.records]) * 1000

    @property
    def failures(self) -> list[Record]:
        return [record for record in self.records if record.outcome.startswith("failure")]

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies_ms, 95))

    @property
    def throughput(self) -> float:
        return len(self.records) / self.seconds


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(server: Server, target: Target, args: argparse.Namespace, inputs: Inputs) -> Result:
    from gradio_client import Client

    started = time.perf_counter()
    server.start(args.checkpoint_dir)
    print(f"\n{server.name}: answering {time.perf_counter() - started:.1f} s after start; {server.snapshot()}")

    def connect(_: int) -> Visitor:
        return Visitor(Client(server.url, verbose=False, analytics_enabled=False, download_files=False))

    clients: list[Visitor] = []
    try:
        with ThreadPoolExecutor(8) as pool:
            clients += pool.map(connect, range(args.clients))
        # Warm-up, not counted: every kind of action once per client, so memory is measured from a warm server.
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda i: warm_up(target, clients[i], inputs, i), range(args.clients)))
        warm = server.snapshot()
        print(f"  after warm-up ({WARM_UP_CALLS * args.clients} calls): {warm}; load average {load_average()}")
        records, seconds = run_load(target, clients, inputs, 60 * args.minutes, args.requests)
        end = server.snapshot()
        print(f"  at the end: {end}; load average {load_average()}")
        return Result(server.name, records, seconds, warm, end)
    finally:
        server.stop()


def server_cpu_ms(result: Result) -> float:
    """The server process's own CPU time per call during the measured load."""
    return 1000 * (result.end.server_cpu - result.warm.server_cpu) / len(result.records)


def print_result(result: Result) -> None:
    expected = sum(record.outcome == "expected error" for record in result.records)
    print(f"  {len(result.records):,} calls in {result.seconds:.0f} s: {len(result.failures)} failures, "
          f"{expected} bad files answered with an error (expected)")
    print(f"  latency p50 {result.p50:.0f} ms, p95 {result.p95:.0f} ms; throughput {result.throughput:.1f} calls/s")
    calls = len(result.records)
    client_ms = 1000 * (result.end.client_cpu - result.warm.client_cpu) / calls
    print(f"  CPU per call: server {server_cpu_ms(result):.1f} ms, the clients (this process) {client_ms:.0f} ms")
    by_kind = {}
    for record in result.records:
        by_kind.setdefault(record.kind, []).append(record.seconds * 1000)
    print("  p50 by kind: " + ", ".join(f"{kind} {np.median(ms):.0f} ms (n={len(ms)})" for kind, ms in by_kind.items()))
    for record in result.failures[:5]:
        print(f"  {record.kind}: {record.outcome[:300]}")


def print_verdict(app: Result, floor: Result) -> None:
    p50_ratio, throughput_ratio = app.p50 / floor.p50, app.throughput / floor.throughput
    rss_growth = app.end.rss_mb - app.warm.rss_mb
    calls = len(app.records)
    print("\napp against the framework's floor (target beside each):")
    print(f"  failures: {len(app.failures)} (target 0)")
    print(f"  p50 latency: {p50_ratio:.2f}x the floor's (target at most {P50_TARGET}x)")
    print(f"  throughput: {throughput_ratio:.2f}x the floor's (target at least {THROUGHPUT_TARGET}x)")
    cpu_ratio = server_cpu_ms(app) / server_cpu_ms(floor)
    print(f"  server CPU per call: {cpu_ratio:.2f}x the floor's (target at most {CPU_TARGET}x; the floor's calls "
          "are all classifications, the app's include Grad-CAM)")
    over = "" if calls >= RSS_TARGET_REQUESTS else f"; this run made {calls:,}"
    print(f"  RSS growth after warm-up: {rss_growth:+.1f} MB over {calls:,} calls "
          f"(target under {RSS_TARGET_MB} MB over {RSS_TARGET_REQUESTS:,}{over})")


# ---- visitors: one after another, each in a new session ---------------------------------------


@dataclass
class VisitorsResult:
    name: str
    seconds: float
    records: list[Record]
    start: Snapshot  # after one visitor on each connection, when the measured visitors start
    reports: list[tuple[int, Snapshot]]  # (visitors so far, snapshot), every VISITORS_PER_REPORT visitors
    end: Snapshot

    @property
    def failures(self) -> list[Record]:
        return [record for record in self.records if record.outcome.startswith("failure")]

    def memory_kb_per_visitor(self) -> float:
        return 1024 * (self.end.rss_mb - self.start.rss_mb) / len(self.records)

    def cpu_ms_per_visitor(self) -> float:
        return 1000 * (self.end.server_cpu - self.start.server_cpu) / len(self.records)

    def p50(self) -> float:
        return float(np.median([record.seconds for record in self.records])) * 1000


class Tab:
    """A browser tab's requests, over one keep-alive connection: upload, join the queue, read the answer.

    gradio_client costs the load generator more CPU per call than the server spends; these are
    the requests the page itself makes for a classification, each visit in a new session.
    """

    def __init__(self, url: str, is_app: bool) -> None:
        import httpx

        self.url, self.is_app = url, is_app
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS))
        config = self.http.get(f"{url}/config").raise_for_status().json()
        self.api = config.get("api_prefix", "/gradio_api")
        self.fn_index = next(dep["id"] for dep in config["dependencies"] if dep.get("api_name") == "classify")

    def visit(self, path: Path) -> None:
        """A new session classifies ``path`` (the app's preview is checked: it comes inside the answer)."""
        import json
        import uuid

        session = str(uuid.uuid4())
        with open(path, "rb") as file:
            uploaded = self.http.post(f"{self.url}{self.api}/upload", files=[("files", (path.name, file))])
        image = {"path": uploaded.raise_for_status().json()[0], "orig_name": path.name,
                 "meta": {"_type": "gradio.FileData"}}
        data = [image, "crop", 3, "single"] if self.is_app else [image]
        self.http.post(f"{self.url}{self.api}/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": session, "event_data": None, "trigger_id": None,
        }).raise_for_status()
        with self.http.stream("GET", f"{self.url}{self.api}/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    break
            else:
                raise RuntimeError("the answer stream ended before the answer")
        if not message.get("success"):
            raise RuntimeError(f"the call failed: {str(message.get('output'))[:200]}")
        output = message["output"]["data"]
        label = output[1] if self.is_app else output[0]
        if not (isinstance(label, dict) and label.get("label")):
            raise RuntimeError(f"label missing: {label!r}")
        if self.is_app:
            check_inline_image(output[0])

    def close(self) -> None:
        self.http.close()


def measure_visitors(server: Server, target: Target, args: argparse.Namespace, inputs: Inputs) -> VisitorsResult:
    started = time.perf_counter()
    server.start(args.checkpoint_dir)
    print(f"\n{server.name}: answering {time.perf_counter() - started:.1f} s after start; {server.snapshot()}")

    connections: list[Tab] = []
    lock, records, reports = threading.Lock(), [], []
    next_visitor = iter(range(args.visitors))

    def come(tab: Tab, index: int) -> Record:
        return timed_call("example", lambda: tab.visit(inputs.examples[index % len(inputs.examples)]))

    def connection_loop(visitor: Tab) -> None:
        while True:
            with lock:
                index = next(next_visitor, None)
            if index is None:
                return
            record = come(visitor, index)
            with lock:
                records.append(record)
                done = len(records)
                if done % VISITORS_PER_REPORT == 0:
                    reports.append((done, server.snapshot()))
                    report = reports[-1][1]
                    rate = done / (time.perf_counter() - start_time)
                    cpu = 1000 * (report.server_cpu - start.server_cpu) / done
                    print(f"  {done:>7,} visitors: RSS {report.rss_mb:.0f} MB ({report.rss_mb - start.rss_mb:+.1f}), "
                          f"{rate:.1f} visitors/s, server CPU {cpu:.1f} ms per classification", flush=True)

    try:
        connections += [Tab(server.url, target.is_app) for _ in range(args.clients)]
        # Warm-up, not counted: one visitor on each connection, and each example once.
        warm_up_visitors = max(args.clients, len(inputs.examples))
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda j: [come(connections[j], i) for i in range(j, warm_up_visitors, args.clients)],
                          range(args.clients)))
        start = server.snapshot()
        print(f"  after warm-up: {start}; load average {load_average()}")
        start_time = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(connection_loop, connections))
        seconds = time.perf_counter() - start_time
        end = server.snapshot()
        print(f"  at the end: {end}; load average {load_average()}")
        return VisitorsResult(server.name, seconds, records, start, reports, end)
    finally:
        for tab in connections:
            tab.close()
        server.stop()


def print_visitors_result(result: VisitorsResult) -> None:
    count = len(result.records)
    print(f"  {count:,} visitors in {result.seconds:.0f} s: {len(result.failures)} failures; "
          f"{count / result.seconds:.1f} visitors/s, latency p50 {result.p50():.0f} ms")
    print(f"  memory per visitor: {result.memory_kb_per_visitor():.1f} KB; server CPU per classification: "
          f"{result.cpu_ms_per_visitor():.1f} ms")
    for record in result.failures[:5]:
        print(f"  {record.kind}: {record.outcome[:300]}")


def print_visitors_verdict(app: VisitorsResult, floor: VisitorsResult, retention: float) -> None:
    memory_ratio = app.memory_kb_per_visitor() / max(floor.memory_kb_per_visitor(), 1e-9)
    print(f"\napp against the framework's floor, {len(app.records):,} visitors (target beside each):")
    print(f"  failures: {len(app.failures)} (target 0)")
    print(f"  memory per visitor: {app.memory_kb_per_visitor():.1f} KB against {floor.memory_kb_per_visitor():.1f} KB,"
          f" {memory_ratio:.2f}x the floor's (target at most {VISITOR_MEMORY_TARGET}x; the app releases a session "
          f"{retention:g} s after its last use)")
    if app.reports and len(app.records) > VISITORS_PER_REPORT:
        first = app.reports[0][1]
        print(f"  RSS after {len(app.records):,} visitors against after the first {VISITORS_PER_REPORT:,}: "
              f"{app.end.rss_mb - first.rss_mb:+.1f} MB (target within {VISITOR_GROWTH_TARGET_MB} MB); the floor's "
              f"{floor.end.rss_mb - floor.reports[0][1].rss_mb:+.1f} MB")
    cpu_ratio = app.cpu_ms_per_visitor() / floor.cpu_ms_per_visitor()
    print(f"  server CPU per classification, each in a new session: {cpu_ratio:.2f}x the floor's "
          f"({app.cpu_ms_per_visitor():.1f} against {floor.cpu_ms_per_visitor():.1f} ms; target at most {CPU_TARGET}x)")
    print(f"  p50 latency {app.p50() / floor.p50():.2f}x the floor's; throughput "
          f"{len(app.records) / app.seconds / (len(floor.records) / floor.seconds):.2f}x")


def positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=positive(int), default=None,
                        help="simultaneous clients (default 32; 8 with --visitors)")
    parser.add_argument("--visitors", type=positive(int), default=None,
                        help="instead of the crowd: this many visitors, each in a new session, classifying one "
                        "example each")
    parser.add_argument("--retention", type=positive(float), default=60.0,
                        help="with --visitors: the app's --file-retention, seconds (default 60)")
    parser.add_argument("--minutes", type=positive(float), default=1.0, help="load time per server (default 1)")
    parser.add_argument("--requests", type=positive(int), default=None,
                        help="stop each server's load after this many calls (default: no cap)")
    parser.add_argument("--concurrency", type=positive(int),
                        default=int(os.environ.get("APP_CONCURRENCY", APP_CONCURRENCY)),
                        help="requests of one kind computed at once, on both servers (default: the app's own, "
                        f"$APP_CONCURRENCY, else {APP_CONCURRENCY})")
    parser.add_argument("--checkpoint-dir", type=Path,
                        default=Path(os.environ.get("CHECKPOINT_DIR", ROOT / "checkpoints")))
    args = parser.parse_args()
    if args.clients is None:
        args.clients = 8 if args.visitors else 32
    return args


def the_two_servers(folder: Path, args: argparse.Namespace, *app_options: str) -> list[tuple[Server, bool]]:
    """The app (with ``app_options``) and the floor, each with the same queue settings and its own folder."""
    queue = ["--concurrency", str(args.concurrency)]
    return [(Server("app (python app.py)", [sys.executable, "app.py", *queue, *app_options], folder / "app-tmp",
                    folder / "app.log"), True),
            (Server("floor (benchmarks/floor_app.py)", [sys.executable, "benchmarks/floor_app.py", *queue],
                    folder / "floor-tmp", folder / "floor.log"), False)]


def main_visitors(args: argparse.Namespace) -> None:
    print(f"{args.visitors:,} visitors per server, each in a new session, on {args.clients} connections; "
          f"the app's retention {args.retention:g} s; CPU cores: {os.cpu_count()}; load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="app-visitors-") as scratch:
        folder = Path(scratch)
        inputs = make_inputs(folder, args.checkpoint_dir)
        results = []
        for server, is_app in the_two_servers(folder, args, "--file-retention", str(args.retention)):
            results.append(measure_visitors(server, Target(is_app), args, inputs))
            print_visitors_result(results[-1])
        print_visitors_verdict(*results, retention=args.retention)
    print(f"load average at the end: {load_average()}")


def main() -> None:
    args = parse_args()
    args.checkpoint_dir = args.checkpoint_dir.resolve()
    if args.visitors:
        main_visitors(args)
        return
    print(f"{args.clients} clients, {args.minutes:g} min per server"
          + (f" or {args.requests:,} calls" if args.requests else "")
          + f"; mix: {', '.join(f'{kind} {weight}%' for kind, weight in MIX.items())}; "
          f"CPU cores: {os.cpu_count()}; load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="app-load-") as scratch:
        folder = Path(scratch)
        inputs = make_inputs(folder, args.checkpoint_dir)
        print("uploads: " + ", ".join(f"{path.name} ({path.stat().st_size / 1e6:.2f} MB)" for path in inputs.uploads)
              + "; bad files: " + ", ".join(path.name for path in inputs.bad_files))
        results = []
        for server, is_app in the_two_servers(folder, args):
            results.append(measure(server, Target(is_app), args, inputs))
            print_result(results[-1])
        print_verdict(*results)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
