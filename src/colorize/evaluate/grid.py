"""Image grids: one row per photo, gray input | prediction | ground truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from colorize import lab


def sample_grid(L: np.ndarray, ab_pred: np.ndarray, ab_true: np.ndarray, gap: int = 2
                ) -> np.ndarray:
    """L (N, H, W), ab (N, 2, H, W) -> uint8 RGB grid (N rows x 3 columns)."""
    rows = []
    for Li, p, t in zip(L, ab_pred, ab_true, strict=True):
        zero = np.zeros_like(t)
        tiles = [lab.lab_to_rgb8(lab.join_l_ab(Li, x)) for x in (zero, p, t)]
        rows.append(_hstack(tiles, gap))
    return _vstack(rows, gap)


def _hstack(tiles, gap):
    return _join(tiles, gap, axis=1)


def _vstack(rows, gap):
    return _join(rows, gap, axis=0)


def _join(parts: list[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """Concatenate images along an axis with white separators `gap` pixels thick."""
    shape = list(parts[0].shape)
    shape[axis] = gap
    sep = np.full(shape, 255, np.uint8)
    out = [parts[0]]
    for p in parts[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=axis)


def save_png(rgb: np.ndarray, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
