"""Robust image decoding: any common file -> RGB uint8/uint16, or a reason why not.

Handles EXIF orientation, gray, CMYK JPEG, alpha (composited on white), 16-bit and palette inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Magic numbers of formats that may carry alpha; they are decoded with IMREAD_UNCHANGED.
_ALPHA_MAGIC = (b"\x89PNG", b"RIFF", b"II*\x00", b"MM\x00*", b"GIF8")


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


def decode(data: bytes, max_pixels: int = 50_000_000, min_side: int = 0) -> Decoded:
    """Decode image bytes to RGB. Raises ImageError('empty'|'unreadable'|'too_large').

    min_side > 0 lets a large JPEG be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, several
    times faster) as long as its short side stays >= min_side.
    """
    if not data:
        raise ImageError("empty", "0 bytes")
    _refuse_from_header(data, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    if data[:4] in _ALPHA_MAGIC:
        flags = cv2.IMREAD_UNCHANGED
    else:  # JPEG and others: ANYDEPTH|ANYCOLOR applies EXIF orientation and keeps 16-bit
        flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
        # Small files cannot hold large photos; skip the header read for them.
        if min_side and data[:2] == b"\xff\xd8" and len(data) > 64_000:
            flags = _reduced_jpeg_flags(data, min_side, max_pixels) or flags
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


def _refuse_from_header(data: bytes, max_pixels: int) -> None:
    """Refuse an oversize image from its header, before decoding allocates it."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return  # unknown to PIL, or beyond its own bomb limit: decoding decides
    if w * h > max_pixels:
        raise ImageError("too_large", f"{w}x{h} exceeds {max_pixels} pixels")


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def _reduced_jpeg_flags(data: bytes, min_side: int, max_pixels: int) -> int | None:
    """The strongest JPEG reduction that keeps the short side >= min_side, from the header."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            if im.mode not in ("RGB", "L", "YCbCr") or w * h > max_pixels:
                return None  # CMYK and oversize go through the normal path
    except (UnidentifiedImageError, OSError):
        return None
    for factor, flag in _REDUCED:
        if min(w, h) // factor >= min_side:
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
