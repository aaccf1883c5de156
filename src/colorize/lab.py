"""The one place that knows CIELAB: conversion, value ranges and network scaling.

All conversions use OpenCV on float32 sRGB in [0, 1] (D65), which gives L* in [0, 100] and signed
a*, b* (OpenCV's uint8 path quantizes a/b by up to ~2.7 units, so it is never used here).
"""

from __future__ import annotations

import cv2
import numpy as np

L_MAX = 100.0
# Extent of a*, b* over the 8-bit sRGB gamut is about -86..98 and -108..95.
AB_MIN = -110.0
AB_MAX = 110.0
# Network scaling: L in [-1, 1], ab divided by AB_SCALE (so the gamut maps into about [-1, 1]).
L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0
# Storage precision on disk (see README): float16 keeps the round trip well below 0.5 ab units.
STORE_DTYPE = np.float16


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (H, W, 3) uint8 / uint16 / float in [0, 1] -> float32 LAB (H, W, 3)."""
    return cv2.cvtColor(to_float_rgb(rgb), cv2.COLOR_RGB2LAB)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float LAB (H, W, 3) -> float32 sRGB in [0, 1]; ab is clamped to the valid range first."""
    lab = np.asarray(lab, dtype=np.float32).copy()
    lab[..., 0] = np.clip(lab[..., 0], 0.0, L_MAX)
    lab[..., 1:] = np.clip(lab[..., 1:], AB_MIN, AB_MAX)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0.0, 1.0)


def lab_to_rgb8(lab: np.ndarray) -> np.ndarray:
    """float LAB -> uint8 sRGB (rounded)."""
    return np.round(lab_to_rgb(lab) * 255.0).astype(np.uint8)


def to_float_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float RGB -> float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) / 65535.0
    return np.clip(rgb.astype(np.float32), 0.0, 1.0)


def join_l_ab(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L (H, W) and ab (H, W, 2) or (2, H, W) -> LAB (H, W, 3) float32."""
    ab = np.asarray(ab, dtype=np.float32)
    if ab.shape[0] == 2 and ab.ndim == 3 and ab.shape[-1] != 2:
        ab = ab.transpose(1, 2, 0)
    return np.concatenate([np.asarray(L, np.float32)[..., None], ab], axis=-1)


def normalize_l(L):
    """L* in [0, 100] -> network input in [-1, 1] (works on numpy arrays and torch tensors)."""
    return (L - L_CENTER) / L_SCALE


def normalize_ab(ab):
    return ab / AB_SCALE


def denormalize_ab(ab):
    return ab * AB_SCALE
