"""The files the app writes for the page, and how long they and the visitors' uploads are kept.

Images go to the page as PNG files in Gradio's temporary folder, except the Classify tab's
preview and Grad-CAM maps, small enough to travel inside the answer as ``data:`` URLs
(``png_data_url``). Gradio (6.31) would write an array output itself, under a name taken from
its content, by overwriting the file in place (``processing_utils.save_pil_to_cache``): when a
crowd sends the same image at once, one request rewrites the file while another is sending it,
and that download arrives cut short. ``png_file`` writes each image whole under a temporary name
and renames it into place, so a reader always gets a complete file; Gradio serves a path already
in its folder as it is.

Uploads and these images are deleted ``retention`` seconds after they were last handed out
(Gradio's ``delete_cache``, which tracks both), and the per-file folders they leave behind
are removed by ``FolderSweeper``, so a server running for months neither fills its disk nor
keeps visitors' photos.
"""

import base64
import hashlib
import io
import os
import threading
import time
from pathlib import Path

import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

from artifacts.atomic import atomic_write

IMAGE_FOLDER = "images"


def temporary_folder() -> Path:
    """Gradio's folder for uploads and outputs ($GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return Path(get_upload_folder())


def png_file(pixels: np.ndarray) -> str:
    """The path of a PNG of ``pixels`` (H x W x 3 uint8) in Gradio's folder, written whole.

    Identical images share one file, named after the pixels, so an image sent again (an
    example, a crowd's identical uploads) is encoded once; handing it out again refreshes
    its age.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:32]
    path = temporary_folder() / IMAGE_FOLDER / f"{digest}.png"
    try:
        os.utime(path)
        return str(path)
    except FileNotFoundError:
        pass
    encoded = png_bytes(pixels)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(encoded))
    return str(path)


def png_bytes(pixels: np.ndarray) -> bytes:
    """``pixels`` (H x W x 3 uint8) encoded as a PNG."""
    buffer = io.BytesIO()
    # Level 1 is quicker to write than the default 6; the files are a little larger.
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_data_url(pixels: np.ndarray) -> str:
    """``pixels`` as a ``data:image/png;base64,...`` URL: a small image sent inside the answer itself.

    A 32 x 32 image is 1 to 3 KB, a 128-pixel Grad-CAM overlay 10 to 20 KB; as a file each
    would cost the server a write, Gradio's allowed-path checks and a request of its own for
    the page to fetch it.
    """
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def sweep_interval(retention: float) -> float:
    """How often expired files are looked for: a tenth of the retention, between 1 s and 10 min."""
    return float(min(600.0, max(1.0, retention / 10)))


def remove_empty_folders(root: Path, older_than: float) -> int:
    """Remove the empty folders under ``root`` not modified for ``older_than`` seconds; return how many.

    Gradio deletes expired files but keeps the folder each one was stored in. A folder's
    modification time moves whenever a file goes into it, so an old empty one has received
    nothing for the whole retention time. Gradio's own image folder stays.
    """
    removed = 0
    cutoff = time.time() - older_than
    for folder, _, files in os.walk(root, topdown=False):
        path = Path(folder)
        if files or path == root or path == root / IMAGE_FOLDER:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.rmdir()  # refuses a folder that is no longer empty
                removed += 1
        except OSError:
            continue
    return removed


class FolderSweeper(threading.Thread):
    """A daemon thread that removes the empty folders expired files leave behind in ``root``."""

    def __init__(self, root: Path, retention: float) -> None:
        super().__init__(name="folder-sweeper", daemon=True)
        self.root = Path(root)
        self.retention = retention
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(sweep_interval(self.retention)):
            remove_empty_folders(self.root, self.retention)

    def stop(self) -> None:
        self.stopped.set()
