"""Deterministic train/val split decided per image by its content hash.

An image's side depends only on its own bytes, so adding or removing other images never moves it,
and renaming or re-ordering files changes nothing.
"""

from __future__ import annotations

import hashlib

HASH_BITS = 60  # the first 15 hex digits of the SHA-256


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_of(image_id: str, val_fraction: float) -> str:
    """'val' when the hash, read as a number in [0, 1), falls below val_fraction."""
    u = int(image_id[: HASH_BITS // 4], 16) / float(1 << HASH_BITS)
    return "val" if u < val_fraction else "train"
