"""Start `python app.py` as its own process on a free loopback port, wait until it answers, and stop it.

Shared by the tests that talk to a real server (test_app_server, test_app_crowd, test_space_files).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 300  # seconds; start-up takes about 12 s on an idle 2-core CPU, much longer on a busy one


@dataclass
class Server:
    url: str
    port: int
    log: Path
    pid: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_it_answers(process: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the app did not answer within {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.5)


@contextmanager
def app_server(log: Path, args: tuple[str, ...] = (), env: dict[str, str | None] | None = None,
               cwd: Path = ROOT, timeout: float = START_TIMEOUT) -> Iterator[Server]:
    """`python app.py --port PORT *args` in ``cwd``, its output in ``log``; ``env`` entries set to None are unset.

    GRADIO_SERVER_NAME is unset (the default loopback binding is what the tests expect) and
    usage statistics are off.
    """
    port = free_port()
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": None, **(env or {})}
    environment = {key: value for key, value in environment.items() if value is not None}
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=cwd, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_it_answers(process, url, log, timeout)
        yield Server(url, port, log, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
