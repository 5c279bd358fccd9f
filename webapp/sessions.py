"""How long the server keeps a visitor's session: released after the file retention, or when the page closes.

Gradio (6.31) keeps a ``SessionState`` for every session it has seen: the session's gr.State
values (the classified image's pixels, its probabilities, the Mistakes tiles' rows), the
components an event changed for it (the Mistakes filter's choices), and its own copy of the
configuration of every component on the page, built when the session starts: about 260 KB a
session for this page of 146 blocks (Python's allocations, traced), against under 20 KB for the
floor's page of two components. Its ``delete_state``
empties a session's gr.State values when their ``time_to_live`` has passed, or an hour after
the page closed, but keeps the ``SessionState`` itself: a session is forgotten only when
``state_session_capacity`` (10,000) newer ones have come. A server that runs for months would
carry the last 10,000 visitors' sessions, most of them long gone.

``release_sessions`` drops a session (through Gradio's ``delete_state`` first, so each State's
``delete_callback`` runs) once it has been idle for the retention, the same retention as
uploaded files (``--file-retention``), or once its page has closed (Gradio marks the session
closed when the page's heartbeat connection ends), whichever comes first. Gradio's
``time_last_used`` moves on every event of the session, so a visitor who is still using the
page keeps everything. A visitor who comes back after that gets a fresh session: the page
still shows their results, Grad-CAM shows nothing until the next upload, and a Mistakes filter
picked from choices only their session had is refused until they pick the model again.

``release_idle_sessions`` runs it on the server's event loop, where Gradio itself reads and
creates sessions, so no request sees a session vanish halfway.

``use_lean_sessions`` removes the largest part of each session at its root: the copy of every
component's configuration (``SessionState.config_values``). Gradio 6.31 builds it when a session
starts (about 9 ms of server time for this page's 146 blocks), rebuilds a component's entry
whenever an event returns that component or a gr.State value, and reads it only to save a deep
link (``gr.DeepLinkButton``), which this page does not have; the page and the API are served from
the components themselves. A lean session keeps what is read: the gr.State values and the
components an event changed for this session.
"""

import asyncio
import contextlib
import ctypes
import datetime
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import SimpleNamespace
from typing import Any

import gradio.state_holder
from gradio.components import State
from gradio.state_holder import SessionState, StateHolder

log = logging.getLogger(__name__)


def release_interval(retention: float) -> float:
    """How often idle and closed sessions are looked for: a tenth of the retention, between 1 and 10 s."""
    return float(min(10.0, max(1.0, retention / 10)))


def release_sessions(holder: StateHolder, retention: float, now: datetime.datetime | None = None) -> int:
    """Drop the sessions idle for ``retention`` seconds or whose page has closed; return how many went."""
    now = now or datetime.datetime.now()
    cutoff = now - datetime.timedelta(seconds=retention)
    released = 0
    for session_hash, session in list(holder.session_data.items()):
        last_used = holder.time_last_used.get(session_hash)
        if not session.is_closed and last_used is not None and last_used >= cutoff:
            continue
        holder.delete_state(session_hash)  # Gradio's own: each gr.State's delete_callback, then its value
        with holder.lock:
            holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)
        released += 1
    return released


def freeze_start_up() -> None:
    """Move what start-up made out of the cyclic garbage collector's way, so each collection walks only what
    requests made. Start-up leaves about 600,000 objects that live as long as the server (the libraries, the
    models, the page); a full collection walking them all holds every thread for a few hundred ms."""
    gc.collect()
    gc.freeze()


def return_freed_memory() -> bool:
    """Hand the memory freed by released sessions back to the system (glibc's ``malloc_trim``).

    A session's objects are small and were allocated among those of the requests around it, so
    freeing them leaves holes inside the heap that glibc keeps rather than returning: without
    this the server's RSS keeps the high-water mark of every retention's worth of visitors.
    Linux with glibc only; elsewhere a no-op. Returns whether memory was trimmed.
    """
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_MALLOC_TRIM = _malloc_trim()


async def sweep(holder: StateHolder, retention: float) -> int:
    """Release idle and closed sessions on the event loop, then hand their memory back in a worker thread
    (trimming a large heap takes a while; the loop keeps serving meanwhile). Returns how many went."""
    released = release_sessions(holder, retention)
    if released:
        await asyncio.to_thread(return_freed_memory)
    return released


def release_idle_sessions(retention: float) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for ``demo.launch(app_kwargs={"lifespan": ...})``: releases sessions while the server runs."""

    async def release_forever(holder: StateHolder) -> None:
        while True:
            await asyncio.sleep(release_interval(retention))
            try:
                await sweep(holder, retention)
            except Exception:  # noqa: BLE001 - a failed sweep is logged and the next one tries again
                log.exception("releasing idle sessions failed")

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(release_forever(app.state_holder))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


class LeanSessionState(SessionState):
    """Gradio's ``SessionState`` without its write-only copy of every component's configuration."""

    def __init__(self, blocks: Any) -> None:
        # Gradio copies the configuration of each component in ``blocks.blocks``; an empty one copies none.
        super().__init__(SimpleNamespace(default_config=blocks.default_config, blocks={}))

    def __setitem__(self, key: int, value: Any) -> None:
        block = self.blocks_config.blocks.get(key)
        if isinstance(block, State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
        else:
            self.blocks_config.blocks[key] = value

    def _update_config(self, key: int) -> None:
        pass

    def _update_value_in_config(self, key: int, value: Any) -> None:
        pass


def use_lean_sessions() -> None:
    """Make every session Gradio creates from now on a ``LeanSessionState``.

    Process-wide: it replaces the class Gradio's session store creates sessions with, so every
    Blocks served by this process gets lean sessions (none of them may use a deep-link button).
    """
    gradio.state_holder.SessionState = LeanSessionState  # the name StateHolder creates sessions with
