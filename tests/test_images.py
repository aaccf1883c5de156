"""A corpus of awkward and bad files: each is decoded correctly or rejected with a reason."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from colorize.data.images import ImageError, decode
from colorize.imaging import flat_fraction
from conftest import photo_tiles


@pytest.fixture(scope="module")
def photo():
    return photo_tiles(1, 64)[0]


def _png(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _jpeg(rgb) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_rgb_jpeg_is_returned_in_rgb_order(photo):
    d = decode(_jpeg(photo))
    assert d.rgb.shape == photo.shape and not d.was_gray
    assert np.abs(d.rgb.astype(int) - photo).mean() < 4  # JPEG loss only, not BGR swap


def test_exif_orientation_is_applied(photo):
    wide = np.ascontiguousarray(photo[:32])  # 32 x 64
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    bio = io.BytesIO()
    Image.fromarray(wide).save(bio, "JPEG", exif=exif)
    assert decode(bio.getvalue()).rgb.shape[:2] == (64, 32)


def test_cmyk_jpeg(photo):
    bio = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(bio, "JPEG", quality=95)
    d = decode(bio.getvalue())
    assert d.rgb.shape == photo.shape
    assert np.abs(d.rgb.astype(int) - photo).mean() < 6


def test_rgba_is_composited_on_white(photo):
    bgra = np.dstack([cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), np.full(photo.shape[:2], 255,
                                                                       np.uint8)])
    bgra[:8, :8, 3] = 0  # transparent corner
    d = decode(_png(bgra))
    assert d.rgb.shape == photo.shape
    assert (d.rgb[:8, :8] == 255).all()
    assert np.array_equal(d.rgb[8:, 8:], photo[8:, 8:])


def test_16bit_png_keeps_its_depth(photo):
    bgr16 = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    d = decode(_png(bgr16))
    assert d.rgb.dtype == np.uint16
    assert np.array_equal((d.rgb // 257).astype(np.uint8), photo)


def test_gray_is_flagged(photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    d = decode(_png(gray))
    assert d.was_gray and d.rgb.shape == photo.shape


def test_gray_with_alpha(photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    la = Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA")
    bio = io.BytesIO()
    la.save(bio, "PNG")
    d = decode(bio.getvalue())
    assert d.was_gray and np.array_equal(d.rgb[..., 0], gray)


def test_one_pixel_image_decodes():
    assert decode(_png(np.zeros((1, 1, 3), np.uint8))).rgb.shape == (1, 1, 3)


@pytest.mark.parametrize("name,blob,reason", [
    ("empty", b"", "empty"),
    ("text renamed .jpg", b"this is not an image\n" * 10, "unreadable"),
    ("random bytes", np.random.default_rng(0).bytes(2048), "unreadable"),
    ("jpeg header only", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "unreadable"),
])
def test_unusable_bytes_raise_image_error(name, blob, reason):
    with pytest.raises(ImageError) as e:
        decode(blob)
    assert e.value.reason == reason


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated_files_are_unreadable(photo, fmt):
    blob = _jpeg(photo) if fmt == "jpg" else _png(photo)
    with pytest.raises(ImageError) as e:
        decode(blob[: len(blob) // 2])
    assert e.value.reason == "unreadable"


def test_too_large_is_refused(photo):
    with pytest.raises(ImageError) as e:
        decode(_png(photo), max_pixels=100)
    assert e.value.reason == "too_large"


def test_flat_fraction_separates_drawings_from_photos(photo):
    drawing = np.zeros((64, 64, 3), np.uint8)
    drawing[:, 32:] = (200, 30, 30)
    assert flat_fraction(drawing) > 0.9
    assert flat_fraction(photo) < 0.09
