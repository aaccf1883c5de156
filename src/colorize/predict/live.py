"""Colorizing one photo interactively: the network runs once per (photo, hints), every change of
decoding only re-decodes its cached output. What the browser app (predict/app.py) calls, kept
free of any web library so that it is tested on its own.

The full-resolution result is made exactly as `colorize predict` makes it for one photo (the
same working-size L, the same forward pass, the same `compose`), so a downloaded PNG has the
same pixels as the command's. What is shown on the page is a preview composed from the photo
scaled to at most PREVIEW_SIDE pixels a side (the same ab, fewer pixels to convert and send);
clicks on the preview are mapped back to the photo's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from colorize.data.images import (
    SERVED_MAX_PIXELS,
    ImageError,
    decode,
    max_file_bytes,
    read_image_file,
    to_uint8,
)
from colorize.decoding import Decoding
from colorize.model import hints as H
from colorize.model.inference import decode as decode_output
from colorize.model.inference import forward
from colorize.predict.load import Resolved
from colorize.predict.photo import compose, working_l

PREVIEW_SIDE = 1600  # a 1-megapixel photo is shown at its own size
MAX_PIXELS = SERVED_MAX_PIXELS  # uploads are limited like the served model's rows


@dataclass
class Photo:
    """An uploaded photo, its preview-sized copy and the network outputs already computed."""
    name: str
    rgb: np.ndarray
    preview: np.ndarray
    outputs: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def scale(self) -> float:
        """Photo pixels per preview pixel."""
        return self.rgb.shape[1] / self.preview.shape[1]

    def gray(self) -> np.ndarray:
        """The preview as the network sees it: its L* alone."""
        return compose(self.preview, np.zeros((2, 8, 8), np.float32))


def read_photo(path: str | Path, name: str | None = None) -> Photo:
    """An uploaded file -> a Photo; ImageError (its reason and detail are the page's message)
    for anything that is not a photo within the served model's limits."""
    rgb = decode(read_image_file(path, max_file_bytes(MAX_PIXELS)), max_pixels=MAX_PIXELS).rgb
    return Photo(name or Path(path).name, rgb, _preview(rgb))


def _preview(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = PREVIEW_SIDE / max(h, w)
    small = rgb if k >= 1 else cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))),
                                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(to_uint8(small))  # 16-bit photos: the page shows 8 bits


def to_photo_pixels(photo: Photo, x: float, y: float) -> tuple[int, int]:
    """A point clicked on the preview -> the same point in the photo's own pixels."""
    h, w = photo.rgb.shape[:2]
    return (min(w - 1, int((x + 0.5) * photo.scale)),
            min(h - 1, int((y + 0.5) * h / photo.preview.shape[0])))


class Colorizing:
    """One model's colorizations of photos, cached per (photo, hints)."""

    def __init__(self, found: Resolved, amp: str = "auto"):
        self.found = found
        self.amp = amp  # predict's default, so that the pixels match

    @property
    def takes_hints(self) -> bool:
        return self.found.model.config.hints

    @property
    def decodes(self) -> bool:
        """A classification head, whose distribution the decoding knobs turn into colours."""
        return self.found.model.config.head == "classification"

    def output(self, photo: Photo, hints: list[H.UserHint]) -> torch.Tensor:
        """The network's output for the photo with these hints (run once, then cached)."""
        key = (self.found.description, tuple(hints))
        if key not in photo.outputs:
            model, size = self.found.model, self.found.size
            L = working_l(photo.rgb, size)[None]
            channels = (H.user_channels(hints, *photo.rgb.shape[:2], size, photo.name)[None]
                        if self.takes_hints else None)
            if len(photo.outputs) > 8:  # bounded: older hint sets are recomputed if needed
                photo.outputs.pop(next(iter(photo.outputs)))
            photo.outputs[key] = forward(model, L, self.amp, channels)
        return photo.outputs[key]

    def ab(self, photo: Photo, decoding: Decoding | None, hints: list[H.UserHint]
           ) -> np.ndarray:
        return decode_output(self.found.model, self.output(photo, hints), decoding)[0]

    def preview(self, photo: Photo, decoding: Decoding | None, hints: list[H.UserHint]
                ) -> np.ndarray:
        """What the page shows: the preview-sized result."""
        return compose(photo.preview, self.ab(photo, decoding, hints))

    def full(self, photo: Photo, decoding: Decoding | None, hints: list[H.UserHint]
             ) -> np.ndarray:
        """The full-resolution result: `colorize predict`'s pixels."""
        return compose(photo.rgb, self.ab(photo, decoding, hints))


def hints_json(photo_name: str, hints: list[H.UserHint]) -> dict:
    """Hints as `colorize predict --hints FILE.json` reads them."""
    return {photo_name: [[h.x, h.y, "#" + bytes(h.rgb).hex(), h.side] for h in hints]}


__all__ = ["Colorizing", "ImageError", "Photo", "hints_json", "read_photo", "to_photo_pixels"]
