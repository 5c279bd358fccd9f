"""From an uploaded file to the 32x32 RGB pixels the models see.

``load_image`` turns any common image file into an upright 8-bit RGB picture or raises
``ImageInputError`` with a message meant for the person who uploaded it; ``fit_to_model``
brings that picture to 32x32.
"""

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MODEL_SIZE = 32
# A 50-megapixel phone photo passes; a 30,000 x 30,000 "decompression bomb" (900 MP) does not.
MAX_PIXELS = 80_000_000
# PIL refuses images over twice this at open() and warns above it; load_image refuses anything
# above MAX_PIXELS itself, so the limit holds for every decoder, Gradio's own included.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Formats that decode in-process with Pillow's own code (no Ghostscript for EPS, etc.). The JPEG
# opener also reads MPO (multi-picture JPEGs from phones); AVIF only where Pillow was built with it.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "ICO", "PPM", "TGA", "AVIF")
ORIENTATION_TAG = 0x0112
ACCEPTED_HINT = "Upload a JPEG, PNG, WebP, GIF, BMP or TIFF image."

FIT_MODES: dict[str, str] = {
    "crop": "Centre crop",
    "pad": "Whole image, padded",
    "stretch": "Whole image, stretched",
}
FIT_DESCRIPTIONS: dict[str, str] = {
    "crop": "the largest centred square, scaled to 32×32 (CIFAR-10 photos are square and centred on the object)",
    "pad": "the whole image scaled to fit 32×32, bordered with the average CIFAR-10 colour",
    "stretch": "the whole image squeezed to 32×32, changing its proportions",
}
# The filters a picture can be scaled down with; the app serves Lanczos, a sharp antialiasing filter. A large
# picture is first averaged down by a whole factor (reducing_gap), so the filter does the last threefold or more.
# benchmarks/photos.py --resampling measures the others on real photos (README, "Benchmarks").
RESAMPLING: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
DEFAULT_RESAMPLING = "lanczos"
# The views of a picture the models average their probabilities over (test-time augmentation). The
# CIFAR-10 numbers are all measured on the single view; benchmarks/photos.py --views compares them on photos.
VIEW_MODES: dict[str, str] = {
    "single": "the one 32×32 input",
    "flip": "the 32×32 input and its mirror image (2 views)",
    "crops": "the 32×32 input and four crops of the same picture made 36×36, each 2 pixels off-centre "
             "and a little closer, as training's random crops are; each also mirrored (10 views)",
}
VIEW_LABELS: dict[str, str] = {"single": "One view", "flip": "Mirrored too (2)", "crops": "Mirrored and shifted (10)"}
CROP_MARGIN = 4  # the 36x36 version's extra pixels: four 32x32 crops, one from each corner
# The mean colour of CIFAR-10's training images: padding with it adds no signal after normalization.
PAD_COLOUR = (125, 123, 114)


class ImageInputError(ValueError):
    """An upload that cannot be classified; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Upload:
    picture: Image.Image  # upright 8-bit RGB, possibly decoded at a reduced scale
    size: tuple[int, int]  # the upright picture's full width and height
    format: str  # as Pillow names it: "JPEG", "PNG", ...
    mode: str  # the file's own colour mode: "RGB", "P", "I;16", ...


def _describe(source: str | Path | bytes | BinaryIO) -> str:
    if isinstance(source, (str, Path)):
        return f"“{Path(source).name}”"
    return "The upload"


def _open(source: str | Path | bytes | BinaryIO) -> Image.Image:
    name = _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageInputError(f"{name} did not arrive on the server. Please upload it again.")
        if path.stat().st_size == 0:
            raise ImageInputError(f"{name} is empty (0 bytes). {ACCEPTED_HINT}")
        handle: str | BinaryIO = str(path)
    elif isinstance(source, bytes):
        if not source:
            raise ImageInputError(f"The upload is empty (0 bytes). {ACCEPTED_HINT}")
        handle = io.BytesIO(source)
    else:
        handle = source
    Image.init()
    try:
        return Image.open(handle, formats=[f for f in ACCEPTED_FORMATS if f in Image.OPEN])
    except Image.DecompressionBombError as error:
        raise ImageInputError(
            f"{name} is far too large to decode safely (over {2 * MAX_PIXELS / 1e6:.0f} megapixels; "
            f"the limit is {MAX_PIXELS / 1e6:.0f}). Scale it down and upload it again."
        ) from error
    except UnidentifiedImageError as error:
        raise ImageInputError(f"{name} is not an image this app can read. {ACCEPTED_HINT}") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
        # Pillow's format sniffers raise all of these for damaged headers.
        raise ImageInputError(f"{name} looks damaged and could not be opened ({error}). {ACCEPTED_HINT}") from error


def _to_8bit_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, scaling 16/32-bit values and putting transparency on white."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max(initial=0.0))
        if mode == "F":
            scale = 1 / 255 if top <= 1.0 else 1.0  # float images are either 0-1 or 0-255
        elif mode.startswith("I;16") or top > 255:
            scale = 257.0 if top <= 65535 else top / 255  # 16-bit range -> 8-bit
        else:
            scale = 1.0
        grey = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if "transparency" in image.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas have no colour of their own; white is what a viewer shows them on.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def load_image(source: str | Path | bytes | BinaryIO, min_side: int = MODEL_SIZE) -> Upload:
    """Decode an uploaded image file into an upright 8-bit RGB picture.

    Handles every mode Pillow opens (1, L, P, RGBA, CMYK, 16-bit, float ...), EXIF
    rotation, and animated files (first frame). Large JPEGs are decoded at a reduced
    scale that still keeps at least ``min_side`` pixels on each side, which makes a
    12-megapixel photo cheap. Raises ``ImageInputError`` for anything it cannot use.
    """
    name = _describe(source)
    image = _open(source)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError(f"{name} has no pixels ({width}×{height}). {ACCEPTED_HINT}")
    if width * height > MAX_PIXELS:
        raise ImageInputError(
            f"{name} is {width:,}×{height:,} pixels ({width * height / 1e6:,.0f} megapixels); the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels. Scale it down and upload it again."
        )
    file_format, file_mode = image.format or "unknown", image.mode
    try:
        # EXIF orientations 5-8 turn the picture by 90 degrees.
        upright = (height, width) if image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8) else (width, height)
        if file_format in ("JPEG", "MPO"):
            # Scale before rotating: orientation only swaps the axes, so one minimum fits both.
            image.draft(image.mode, (min_side * 4, min_side * 4))
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return Upload(_to_8bit_rgb(image), upright, file_format, file_mode)
    except MemoryError as error:
        raise ImageInputError(f"{name} is too large to decode here. Scale it down and upload it again.") from error
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many unrelated types for corrupt data
        raise ImageInputError(
            f"{name} is truncated or corrupt and could not be decoded ({error}). "
            "Export or download it again, or try another image."
        ) from error


def fit_to_model(image: Image.Image, fit: str = "crop", size: int = MODEL_SIZE,
                 resampling: str = DEFAULT_RESAMPLING) -> np.ndarray:
    """The (size, size, 3) uint8 pixels the models see, by one of ``FIT_MODES``, scaled with one of ``RESAMPLING``."""
    if fit not in FIT_MODES:
        raise ValueError(f"unknown fit {fit!r}; choose one of {', '.join(FIT_MODES)}")
    if resampling not in RESAMPLING:
        raise ValueError(f"unknown resampling {resampling!r}; choose one of {', '.join(RESAMPLING)}")
    width, height = image.size
    resample = RESAMPLING[resampling]
    if fit == "crop":
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        # reducing_gap first shrinks by an integer factor (fast), then resamples the rest properly.
        result = image.resize((size, size), resample, box=box, reducing_gap=3.0)
    elif fit == "stretch":
        result = image.resize((size, size), resample, reducing_gap=3.0)
    else:
        scale = size / max(width, height)
        inner = (max(1, round(width * scale)), max(1, round(height * scale)))
        result = Image.new("RGB", (size, size), PAD_COLOUR)
        result.paste(image.resize(inner, resample, reducing_gap=3.0), ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return np.asarray(result.convert("RGB"), dtype=np.uint8).copy()


def prepare(source: str | Path | bytes | BinaryIO, fit: str = "crop",
            resampling: str = DEFAULT_RESAMPLING) -> tuple[np.ndarray, Upload]:
    """Load an uploaded file and fit it to the models: (32x32x3 uint8 pixels, what was uploaded)."""
    upload = load_image(source)
    return fit_to_model(upload.picture, fit, resampling=resampling), upload


def model_views(picture: Image.Image, pixels: np.ndarray, fit: str = "crop", views: str = "single",
                resampling: str = DEFAULT_RESAMPLING) -> np.ndarray:
    """The (V, 32, 32, 3) uint8 views of ``VIEW_MODES[views]``; the first is ``pixels``, what ``prepare`` gave."""
    if views not in VIEW_MODES:
        raise ValueError(f"unknown views {views!r}; choose one of {', '.join(VIEW_MODES)}")
    pixels = np.asarray(pixels, dtype=np.uint8)
    stack = [pixels]
    if views == "crops":
        larger = fit_to_model(picture, fit, MODEL_SIZE + CROP_MARGIN, resampling)
        stack += [larger[top:top + MODEL_SIZE, left:left + MODEL_SIZE]
                  for top in (0, CROP_MARGIN) for left in (0, CROP_MARGIN)]
    if views in ("flip", "crops"):
        stack += [view[:, ::-1] for view in stack]
    return np.ascontiguousarray(np.stack(stack))


def enlarge(pixels: np.ndarray, factor: int = 8) -> np.ndarray:
    """Blow a small image up with hard pixel edges, so a preview shows exactly what the model gets."""
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
