"""Image statistics and pictures that several stages use: colourfulness, the flat-neighbourhood
rule, labelled sample grids, PNG encoding and writing.

`prepare` uses the statistics to reject near-gray photos and drawings, `evaluate` to score
predictions, `train` and `evaluate` draw sample grids, `predict` writes PNGs. Living here, below
all of them, none of those stages imports another to borrow a helper.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from colorize import lab
from colorize.files import atomic_path

GRID_LABELS = ("gray input", "prediction", "ground truth")


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003) M on sRGB 0..255, signed variant.

    rg = R - G, yb = (R + G) / 2 - B (signed, not |.|),
    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2).
    """
    rgb = rgb.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2)
                 + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def flat_fraction(rgb8: np.ndarray, size: int = 128) -> float:
    """Share of pixels whose 3x3 neighbourhood is exactly constant, on a nearest-neighbour thumb.

    Camera photos almost never have exactly flat patches (sensor noise, JPEG); drawings and
    synthetic backgrounds do. Nearest-neighbour sampling keeps the flat regions exact.
    """
    h, w = rgb8.shape[:2]
    s = min(1.0, size / max(h, w))
    if s < 1.0:
        rgb8 = cv2.resize(rgb8, (max(3, round(w * s)), max(3, round(h * s))),
                          interpolation=cv2.INTER_NEAREST)
    if min(rgb8.shape[:2]) < 3:
        return 1.0
    kernel = np.ones((3, 3), np.uint8)
    flat = np.ones(rgb8.shape[:2], bool)
    for c in range(3):
        ch = rgb8[..., c]
        flat &= cv2.dilate(ch, kernel) == cv2.erode(ch, kernel)
    return float(flat[1:-1, 1:-1].mean())


def sample_grid(L: np.ndarray, ab_pred: np.ndarray | list[np.ndarray], ab_true: np.ndarray,
                labels: tuple[str, ...] | None = None, gap: int = 2) -> np.ndarray:
    """L (N, H, W), ab (N, 2, H, W) -> uint8 RGB grid, one row per photo, labelled columns.

    `ab_pred` may be one prediction array or a list of them (several models or temperatures
    side by side); columns are gray input | each prediction | ground truth.
    """
    preds = ab_pred if isinstance(ab_pred, list) else [ab_pred]
    if labels is None:
        labels = (GRID_LABELS[0], *([GRID_LABELS[1]] if len(preds) == 1 else
                                   [f"prediction {i + 1}" for i in range(len(preds))]),
                  GRID_LABELS[2])
    if len(labels) != len(preds) + 2:
        raise ValueError(f"{len(labels)} labels for {len(preds) + 2} columns")
    rows = []
    for i, (Li, t) in enumerate(zip(L, ab_true, strict=True)):
        columns = [np.zeros_like(t), *(p[i] for p in preds), t]
        rows.append(_join([lab.lab_to_rgb8(lab.join_l_ab(Li, x)) for x in columns], gap, 1))
    width = L.shape[-1]
    header = _join([_label(text, width) for text in labels], gap, 1)
    return _join([header, *rows], gap, 0)


def _label(text: str, width: int, height: int = 16) -> np.ndarray:
    """A white tile with black text, shrunk to fit the column width."""
    tile = np.full((height, width, 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (w, h), _ = cv2.getTextSize(text, font, scale, 1)
    if w > width - 2:
        scale *= (width - 2) / w
        (w, h), _ = cv2.getTextSize(text, font, scale, 1)
    cv2.putText(tile, text, (max(1, (width - w) // 2), (height + h) // 2), font, scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def _join(parts: list[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """Concatenate images along an axis with white separators `gap` pixels thick."""
    shape = list(parts[0].shape)
    shape[axis] = gap
    sep = np.full(shape, 255, np.uint8)
    out = [parts[0]]
    for p in parts[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=axis)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def save_png(rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8/uint16 image as PNG, atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    return Path(path)
