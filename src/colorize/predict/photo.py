"""Full-resolution colorization: the standard method, in bounded memory.

Predict ab at the model's working size, upsample ab bilinearly to the photo's own size, clamp it,
join it with the photo's full-resolution L*, convert to RGB. Sharpness comes from L, so the output
keeps the original detail; a colour photo given as input is recoloured from its L alone.

Scans of up to a few hundred megapixels must fit in memory, so no full-size float image is ever
made: the working-size L is resized from the photo's own integers, and L, the ab upsampling and
the conversion back to RGB run in horizontal strips written into the preallocated uint8 output.
The result is the same (within one uint8 level) as converting the whole photo at once.
"""

from __future__ import annotations

import cv2
import numpy as np

from colorize import lab
from colorize.decoding import Decoding
from colorize.model.inference import predict_ab
from colorize.model.network import Colorizer

# Pixels per strip in compose(): about 50 bytes of float temporaries each, so ~50 MB per strip.
STRIP_PIXELS = 1 << 20


def working_l(rgb: np.ndarray, size: int) -> np.ndarray:
    """The photo's L* resized (aspect ignored, as in Zhang et al.) to size x size.

    The area resize runs on the photo's own uint8/uint16 values, not on a full-size float copy;
    rounding the small image to integers moves L* by at most ~0.4 (uint8; mean < 0.1), far below
    what the network can resolve.
    """
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return lab.rgb_to_lab(small)[..., 0]


def compose(rgb: np.ndarray, ab_small: np.ndarray, strip_pixels: int = STRIP_PIXELS
            ) -> np.ndarray:
    """Join predicted ab (2, s, s) with the photo's own full-resolution L -> uint8 RGB.

    ab is resized to the photo's width once (s rows: small); each strip then interpolates its
    own rows from it, which is what one cv2.resize(ab, (w, h), INTER_LINEAR) computes, without
    a full-size ab or LAB image.
    """
    h, w = rgb.shape[:2]
    s = ab_small.shape[1]
    ab_rows = cv2.resize(np.ascontiguousarray(ab_small.transpose(1, 2, 0)), (w, s),
                         interpolation=cv2.INTER_LINEAR).reshape(s, w, 2)
    out = np.empty((h, w, 3), np.uint8)
    step = max(1, strip_pixels // w)
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        top, bottom, f = _linear_taps(y0, y1, h, s)
        strip = lab.rgb_to_lab(rgb[y0:y1])
        strip[..., 1:] = ab_rows[top] * (1.0 - f) + ab_rows[bottom] * f
        out[y0:y1] = lab.lab_to_rgb8(strip)  # clamps ab to the gamut range first
    return out


def _linear_taps(y0: int, y1: int, h: int, s: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows and weight of OpenCV's INTER_LINEAR for output rows y0..y1 of h (from s rows):
    src = (y + 0.5) * s / h - 0.5; the rows either side of it, clamped to the edges."""
    src = (np.arange(y0, y1) + 0.5) * (s / h) - 0.5
    first = np.floor(src)
    f = (src - first).astype(np.float32)[:, None, None]
    first = first.astype(np.intp)
    return np.clip(first, 0, s - 1), np.clip(first + 1, 0, s - 1), f


def colorize_batch(model: Colorizer, size: int, photos: list[np.ndarray],
                   decoding: Decoding | None, amp: str = "auto",
                   hints: np.ndarray | None = None) -> list[np.ndarray]:
    """RGB photos (any size, uint8/uint16) -> colorized uint8 RGB at each photo's own size.
    `decoding`: the classification head's (colorize/decoding.py; regression ignores it).
    amp="auto": bf16 autocast + channels_last where the hardware supports it; "off": fp32.
    `hints`: each photo's hint channels at the working size (N, 3, size, size;
    model/hints.py), for a network that takes hints."""
    if not photos:
        return []
    Ls = np.stack([working_l(p, size) for p in photos])
    ab = predict_ab(model, Ls, [decoding], batch_size=len(photos), amp=amp, hints=hints)[0]
    return [compose(p, a) for p, a in zip(photos, ab, strict=True)]
