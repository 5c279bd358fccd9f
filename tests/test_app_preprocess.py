"""Uploads of every common format and colour mode become the right 32x32 RGB pixels; bad files get clear errors."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from webapp.preprocess import (
    DEFAULT_RESAMPLING,
    MAX_PIXELS,
    PAD_COLOUR,
    RESAMPLING,
    ImageInputError,
    enlarge,
    fit_to_model,
    load_image,
    prepare,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG assembled by hand, for what Pillow cannot write (16-bit RGB) or should never have to (bombs)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def rgb16_png() -> bytes:
    pixels = np.zeros((8, 8, 3), dtype=">u2")
    pixels[..., 0] = 65535  # full red at 16 bits per channel
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return raw_png(8, 8, 16, 2, zlib.compress(rows))


def palette(colour: tuple[int, int, int], transparent: bool = False) -> bytes:
    image = Image.new("P", (40, 40), 0)
    image.putpalette(list(colour) * 256)
    return encode(image, "PNG", **({"transparency": 0} if transparent else {}))


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 40), (200, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 200))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


# name -> (file bytes, the colour every pixel should have after loading, tolerance for lossy formats)
CASES = {
    "RGB PNG": (lambda: encode(Image.new("RGB", (40, 30), (10, 200, 30)), "PNG"), (10, 200, 30), 0),
    "RGB JPEG": (lambda: encode(Image.new("RGB", (40, 30), (10, 200, 30)), "JPEG", quality=95), (10, 200, 30), 6),
    "RGB WebP": (lambda: encode(Image.new("RGB", (40, 30), (10, 200, 30)), "WEBP", lossless=True), (10, 200, 30), 0),
    "RGB BMP": (lambda: encode(Image.new("RGB", (40, 30), (10, 200, 30)), "BMP"), (10, 200, 30), 0),
    "RGB TIFF": (lambda: encode(Image.new("RGB", (40, 30), (10, 200, 30)), "TIFF"), (10, 200, 30), 0),
    "animated GIF (first frame)": (animated_gif, (200, 0, 0), 3),
    "grayscale L": (lambda: encode(Image.new("L", (40, 30), 77), "PNG"), (77, 77, 77), 0),
    "bilevel 1": (lambda: encode(Image.new("1", (40, 30), 1), "PNG"), (255, 255, 255), 0),
    "palette P": (lambda: palette((120, 40, 220)), (120, 40, 220), 0),
    "palette P, transparent": (lambda: palette((120, 40, 220), transparent=True), (255, 255, 255), 0),
    "RGBA opaque": (lambda: encode(Image.new("RGBA", (40, 30), (9, 99, 199, 255)), "PNG"), (9, 99, 199), 0),
    "RGBA transparent": (lambda: encode(Image.new("RGBA", (40, 30), (9, 99, 199, 0)), "PNG"), (255, 255, 255), 0),
    "LA transparent": (lambda: encode(Image.new("LA", (40, 30), (30, 0)), "PNG"), (255, 255, 255), 0),
    "16-bit grayscale": (
        lambda: encode(Image.fromarray(np.full((30, 40), 128 * 257, dtype=np.uint16)), "PNG"), (128, 128, 128), 0,
    ),
    "16-bit grayscale, full scale": (
        lambda: encode(Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)), "PNG"), (255, 255, 255), 0,
    ),
    "16-bit RGB": (rgb16_png, (255, 0, 0), 0),
    "32-bit integer TIFF": (
        lambda: encode(Image.fromarray(np.full((30, 40), 200, dtype=np.int32)), "TIFF"), (200, 200, 200), 0,
    ),
    "32-bit float TIFF (0-1)": (
        lambda: encode(Image.fromarray(np.full((30, 40), 0.5, dtype=np.float32)), "TIFF"), (128, 128, 128), 0,
    ),
    "CMYK JPEG": (lambda: encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", quality=95), (255, 0, 0), 8),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_format_and_mode_becomes_the_right_rgb(name: str, tmp_path) -> None:
    data, colour, tolerance = CASES[name]
    path = tmp_path / "upload.img"
    path.write_bytes(data())
    pixels, upload = prepare(path)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert upload.picture.mode == "RGB"
    difference = np.abs(pixels.astype(int) - np.array(colour)).max()
    assert difference <= tolerance, f"{name}: got {pixels[16, 16]}, expected {colour}"


def test_bytes_and_paths_give_the_same_pixels(tmp_path) -> None:
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)), "PNG")
    path = tmp_path / "noise.png"
    path.write_bytes(data)
    assert np.array_equal(prepare(path)[0], prepare(data)[0])


def test_exif_rotation_is_applied(tmp_path) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red, right half blue, as stored in the file
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", what a phone held upright writes
    path = tmp_path / "phone.jpg"
    path.write_bytes(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    upload = load_image(path)
    assert upload.size == (20, 40)  # portrait once upright
    pixels = fit_to_model(upload.picture, "stretch")
    assert pixels[2, 16, 0] > 200 and pixels[2, 16, 2] < 60  # the stored left edge is now at the top
    assert pixels[29, 16, 2] > 200 and pixels[29, 16, 0] < 60


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(Image.new("RGB", (4000, 3000), (90, 60, 30)), "JPEG", quality=80))
    upload = load_image(path)
    assert upload.size == (4000, 3000)
    assert 128 <= min(upload.picture.size) and upload.picture.size[0] <= 1000
    assert np.abs(fit_to_model(upload.picture).astype(int) - (90, 60, 30)).max() <= 4


def test_fit_modes() -> None:
    image = Image.new("RGB", (96, 32), (255, 0, 0))
    image.paste((0, 255, 0), (32, 0, 64, 32))
    image.paste((0, 0, 255), (64, 0, 96, 32))
    crop = fit_to_model(image, "crop")
    assert np.abs(crop.astype(int) - (0, 255, 0)).max() <= 2  # only the centre square survives
    stretch = fit_to_model(image, "stretch")
    assert tuple(stretch[16, 1]) == (255, 0, 0) and tuple(stretch[16, 30]) == (0, 0, 255)
    pad = fit_to_model(Image.new("RGB", (64, 32), (255, 0, 0)), "pad")
    assert tuple(pad[0, 16]) == PAD_COLOUR and tuple(pad[31, 16]) == PAD_COLOUR
    assert tuple(pad[16, 16]) == (255, 0, 0)
    with pytest.raises(ValueError, match="unknown fit"):
        fit_to_model(image, "zoom")


def test_every_resampling_filter_fits_the_picture_and_they_differ() -> None:
    # Finer than the 32x32 grid, each filter blurs it its own way; under 96 px, so the filter does all the shrinking
    # (a larger picture is first averaged down by a whole factor, which would flatten the stripes for every filter).
    stripes = np.zeros((90, 90, 3), dtype=np.uint8)
    stripes[:, ::3] = 255
    picture = Image.fromarray(stripes)
    fitted = {name: fit_to_model(picture, "crop", resampling=name) for name in RESAMPLING}
    assert all(pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8 for pixels in fitted.values())
    assert len({pixels.tobytes() for pixels in fitted.values()}) == len(RESAMPLING)
    np.testing.assert_array_equal(fit_to_model(picture, "crop"), fitted[DEFAULT_RESAMPLING])
    with pytest.raises(ValueError, match="unknown resampling"):
        fit_to_model(picture, "crop", resampling="nearest")


def test_enlarge_keeps_pixels_sharp() -> None:
    pixels = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    big = enlarge(pixels, 8)
    assert big.shape == (256, 256, 3) and np.array_equal(big[::8, ::8], pixels)


# ---- bad files ------------------------------------------------------------------------------


def test_not_an_image(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("a shopping list, not a picture")
    with pytest.raises(ImageInputError, match="not an image"):
        load_image(path)


def test_svg_is_refused_with_advice(tmp_path) -> None:
    path = tmp_path / "logo.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    with pytest.raises(ImageInputError, match="JPEG, PNG"):
        load_image(path)


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        load_image(path)
    with pytest.raises(ImageInputError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(fmt: str) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    with pytest.raises(ImageInputError, match="truncated or corrupt|damaged"):
        load_image(data[: len(data) // 2])


def test_corrupt_image_body() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG"))
    data[40:80] = b"\xff" * 40  # scramble the compressed pixels
    with pytest.raises(ImageInputError):
        load_image(bytes(data))


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ImageInputError, match="did not arrive"):
        load_image(tmp_path / "gone.png")


def decompression_bomb(side: int = 30_000) -> bytes:
    """A genuine, valid side x side 1-bit PNG of zeros: ~100 kB on disk, 900 megapixels decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    return raw_png(side, side, 1, 0, b"".join(chunks) + compressor.flush())


def test_decompression_bomb_is_refused_quickly() -> None:
    bomb = decompression_bomb()
    assert len(bomb) < 2_000_000
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match="too large|megapixels"):
        load_image(bomb)
    assert time.perf_counter() - start < 2, "the bomb must be refused from its header, not decoded"
    assert prepare(encode(Image.new("RGB", (8, 8)), "PNG"))[0].shape == (32, 32, 3)  # and work goes on


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_just_over_the_pixel_limit_is_refused_with_its_size() -> None:
    # Under twice the limit Pillow only warns; the app refuses it itself and says how big it is.
    width, height = 10_000, MAX_PIXELS // 10_000 + 100
    header_only = raw_png(width, height, 8, 0, zlib.compress(b"\x00" * 10))
    with pytest.raises(ImageInputError, match=f"{width:,}×{height:,}"):
        load_image(header_only)


def test_pillow_limit_is_set() -> None:
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS
