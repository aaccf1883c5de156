"""The one gate every image passes: a file or bytes -> RGB uint8/uint16, or a reason why not.

Bounded before anything is decoded: `read_image_file` opens regular files only (a FIFO, a device
or a folder is refused unread) and refuses files over `max_file_bytes`; `probe` recognises the
format by its signature (JPEG, PNG, GIF, WebP, TIFF, BMP: anything else is refused, since OpenCV
would allocate whatever an unknown header claims), reads its dimensions from the header alone
(Pillow, header only) and refuses an image over `max_pixels` there. Only then does OpenCV
decode. prepare, predict, the served model and `colorize request` all go through it.

Handles EXIF orientation, gray, CMYK JPEG, alpha (composited on white), 16-bit and palette inputs.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# The formats decoded, by signature. Those that may carry alpha are decoded with
# IMREAD_UNCHANGED.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
_ALPHA = ("PNG", "WEBP", "TIFF", "GIF")
# A file may hold at most this many bytes per allowed pixel (16-bit RGB, uncompressed), plus
# HEADER_BYTES: more cannot be a photo within the pixel limit.
BYTES_PER_PIXEL = 6
HEADER_BYTES = 16 << 20
# Per photo sent to the served model (predict/service.py, predict/client.py): a 50 MP photo
# takes about 0.4 GB of a worker's memory.
SERVED_MAX_PIXELS = 50_000_000


def max_file_bytes(max_pixels: int) -> int:
    return BYTES_PER_PIXEL * max_pixels + HEADER_BYTES


class ImageError(ValueError):
    """An image that cannot be used; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # (H, W, 3) uint8 or uint16, RGB order
    was_gray: bool


@dataclass(frozen=True)
class Header:
    format: str  # one of FORMATS
    width: int
    height: int
    mode: str  # Pillow's mode (RGB, L, CMYK, ...)


def read_image_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """A regular file's bytes, at most max_bytes; ImageError ('not found', 'not a file',
    'too_large', 'unreadable') otherwise. Never opens a FIFO or a device, so it cannot hang."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageError("not found", "no such file") from None
    except OSError as e:
        raise ImageError("unreadable", e.strerror or str(e)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not a file", "a FIFO, device or folder, not read")
    if info.st_size > max_bytes:
        raise ImageError("too_large", f"{info.st_size} bytes exceeds {max_bytes}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # a file that grew meanwhile is cut, then refused
    except OSError as e:
        raise ImageError("unreadable", e.strerror or str(e)) from None
    if len(data) > max_bytes:
        raise ImageError("too_large", f"over {max_bytes} bytes")
    return data


def signature(data: bytes) -> str | None:
    """The format (one of FORMATS) its first bytes name, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM":
        return "BMP"
    return None


def probe(data: bytes, max_pixels: int) -> Header:
    """The image's format and size from its header alone; ImageError ('empty', 'unreadable',
    'too_large') for anything OpenCV must not be asked to decode."""
    from PIL import Image

    if not data:
        raise ImageError("empty", "0 bytes")
    kind = signature(data)
    if kind is None:
        raise ImageError("unreadable", "not a JPEG, PNG, GIF, WebP, TIFF or BMP file")
    try:
        with _open_header(data, kind) as im:  # the header only
            (w, h), mode = im.size, im.mode
    except Image.DecompressionBombError as e:  # a GIF frame, WebP or MPO past Pillow's limit
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        count = claimed.group(1) if claimed else f"over {2 * Image.MAX_IMAGE_PIXELS}"
        raise ImageError("too_large", f"its {kind} header claims {count} pixels, over "
                                      f"{max_pixels}") from None
    except Exception:  # a broken header fails in many ways inside the parsers
        raise ImageError("unreadable", f"not a readable {kind} header") from None
    if w < 1 or h < 1:
        raise ImageError("unreadable", f"its {kind} header claims {w}x{h} pixels")
    if w * h > max_pixels:
        raise ImageError("too_large", f"{w}x{h} exceeds {max_pixels} pixels")
    return Header(kind, w, h, mode)


def _open_header(data: bytes, kind: str):
    """Pillow's parser for `kind` (its signature already checked; Pillow's plugins bear the
    names of FORMATS, and a multi-picture JPEG still opens as MPO), as Image.open picks it,
    but without Image.open's own pixel limit: that one warns over 89 MP and refuses over
    179 MP whatever the caller allows (predict takes up to 200 MP); `probe` compares the
    header's size with its max_pixels itself. (The GIF, WebP and MPO parsers still refuse
    over 179 MP.)
    """
    from PIL import Image

    if kind not in Image.OPEN:
        Image.init()
    factory, _accept = Image.OPEN[kind]
    return factory(io.BytesIO(data), "")


def decode(data: bytes, max_pixels: int = 50_000_000, min_side: int = 0) -> Decoded:
    """Decode image bytes to RGB (after `probe`). Raises ImageError('empty'|'unreadable'|
    'too_large').

    min_side > 0 lets a large JPEG be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, several
    times faster) as long as its short side stays >= min_side.
    """
    header = probe(data, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    if header.format in _ALPHA:
        flags = cv2.IMREAD_UNCHANGED
    else:  # JPEG and BMP: ANYDEPTH|ANYCOLOR applies EXIF orientation and keeps 16-bit
        flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
        # Small files cannot hold large photos; skip the reduction for them.
        if min_side and header.format == "JPEG" and len(data) > 64_000:
            flags = _reduced_jpeg_flags(header, min_side) or flags
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as e:
        raise ImageError("unreadable", str(e).strip().splitlines()[-1]) from e
    if img is None or img.size == 0:
        raise ImageError("unreadable", "not a decodable image (corrupt, truncated or not an image)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError("too_large", f"{img.shape[1]}x{img.shape[0]} exceeds {max_pixels} pixels")
    if img.dtype not in (np.uint8, np.uint16):
        img = _float_to_uint16(img)
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels == 4:
        img = _composite_on_white(img)
    elif channels == 2:  # gray + alpha
        gray = _composite_on_white(np.concatenate([img[..., :1]] * 3 + [img[..., 1:]], axis=2))
        img = gray[..., :1]
    if img.shape[2] == 1:
        return Decoded(np.repeat(img, 3, axis=2), was_gray=True)
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # OpenCV decodes to BGR; in place
    # Gray stored as RGB(A), as some PNG encoders and OpenCV's gray+alpha path produce.
    same = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    return Decoded(rgb, was_gray=same)


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def _reduced_jpeg_flags(header: Header, min_side: int) -> int | None:
    """The strongest JPEG reduction that keeps the short side >= min_side."""
    if header.mode not in ("RGB", "L", "YCbCr"):
        return None  # CMYK goes through the normal path
    for factor, flag in _REDUCED:
        if min(header.width, header.height) // factor >= min_side:
            return flag
    return None


def _composite_on_white(bgra: np.ndarray) -> np.ndarray:
    top = 65535.0 if bgra.dtype == np.uint16 else 255.0
    alpha = bgra[..., 3:4].astype(np.float32) / top
    out = bgra[..., :3].astype(np.float32) * alpha + top * (1.0 - alpha)
    return np.round(out).astype(bgra.dtype)


def _float_to_uint16(img: np.ndarray) -> np.ndarray:
    img = np.nan_to_num(img.astype(np.float32))
    hi = float(img.max()) if img.size else 1.0
    scale = 1.0 if hi <= 1.0 else hi
    return np.round(np.clip(img / scale, 0, 1) * 65535).astype(np.uint16)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    return np.round(rgb.astype(np.float32) / 257.0).astype(np.uint8)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to `size` (area filter when shrinking) and center-crop a square."""
    h, w = rgb.shape[:2]
    if h == w == size:
        return rgb
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = cv2.resize(rgb, (nw, nh), interpolation=interp)
    y, x = (nh - size) // 2, (nw - size) // 2
    return out[y : y + size, x : x + size]
