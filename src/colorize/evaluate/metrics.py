"""Colorization metrics on LAB / RGB images. Definitions follow ../shared/notes/colorization.md.

Every function takes one image (H, W, 3) and returns a float; evaluate.py averages over images.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000
from skimage.metrics import structural_similarity

AUC_THRESHOLDS = np.arange(0, 151, dtype=np.float64)  # Zhang et al. 2016: 0..150 step 1


def mse_ab(lab_true: np.ndarray, lab_pred: np.ndarray) -> float:
    """Mean squared error over the a and b channels, in ab units squared."""
    d = lab_true[..., 1:].astype(np.float64) - lab_pred[..., 1:].astype(np.float64)
    return float(np.mean(d**2))


def psnr(rgb_true: np.ndarray, rgb_pred: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over all RGB values (uint8 images, data range 255). Identical -> inf."""
    mse = np.mean((rgb_true.astype(np.float64) - rgb_pred.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(rgb_true: np.ndarray, rgb_pred: np.ndarray) -> float:
    """SSIM on uint8 RGB (skimage defaults: 7x7 window, channel_axis=-1)."""
    win = min(7, *rgb_true.shape[:2])
    win -= 1 - win % 2  # odd window for tiny images
    return float(structural_similarity(rgb_true, rgb_pred, channel_axis=-1, data_range=255,
                                       win_size=win))


def ciede2000(lab_true: np.ndarray, lab_pred: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over pixels."""
    return float(np.mean(deltaE_ciede2000(lab_true.astype(np.float64),
                                          lab_pred.astype(np.float64))))


def ab_error_cmf(lab_true: np.ndarray, lab_pred: np.ndarray) -> np.ndarray:
    """CMF(t) for t = 0..150: share of pixels with ||ab_pred - ab_true||_2 <= t."""
    d = np.linalg.norm(lab_true[..., 1:].astype(np.float64)
                       - lab_pred[..., 1:].astype(np.float64), axis=-1).ravel()
    d.sort()
    return np.searchsorted(d, AUC_THRESHOLDS, side="right") / d.size


def auc(lab_true: np.ndarray, lab_pred: np.ndarray) -> float:
    """Zhang et al.'s AuC: mean of the cumulative ab-error curve over thresholds 0..150."""
    return float(np.mean(ab_error_cmf(lab_true, lab_pred)))
