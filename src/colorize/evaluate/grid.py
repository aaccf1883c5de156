"""Image grids: one row per photo, gray input | prediction | ground truth."""

from __future__ import annotations

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
    h = tiles[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [sep, t]
    return np.concatenate(out, axis=1)


def _vstack(rows, gap):
    w = rows[0].shape[1]
    sep = np.full((gap, w, 3), 255, np.uint8)
    out = [rows[0]]
    for r in rows[1:]:
        out += [sep, r]
    return np.concatenate(out, axis=0)


def save_png(rgb: np.ndarray, path) -> None:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
