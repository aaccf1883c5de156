"""Deterministic train/val/test split decided per image by its content hash.

An image's side depends only on its own bytes, so adding or removing other images never moves it,
and renaming or re-ordering files changes nothing.
"""

from __future__ import annotations

import hashlib

HASH_BITS = 60  # the first 15 hex digits of the SHA-256


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SPLITS = ("train", "val", "test")


def split_of(image_id: str, val_fraction: float, test_fraction: float = 0.0) -> str:
    """The hash read as a number u in [0, 1): 'val' when u < val_fraction, 'test' when
    u >= 1 - test_fraction (the other end, so that adding a test split never moves a
    validation photo), else 'train'. The test split is only ever scored by evaluate: never
    trained on, early-stopped on, swept on or used to choose a decoding."""
    n, top = int(image_id[: HASH_BITS // 4], 16), 1 << HASH_BITS
    # Integers against floats compare exactly in Python (n / top would round near the ends).
    if n < val_fraction * top:
        return "val"
    return "test" if test_fraction and n >= (1.0 - test_fraction) * top else "train"
