"""Colorization metrics on LAB / RGB images. Definitions follow ../shared/notes/colorization.md;
standard ones come from scikit-image. Colourfulness lives in colorize.imaging (prepare uses it).

Per-image functions take one image (H, W, 3) and return a float; `ErrorCurve` accumulates the
cumulative ab-error curve behind AuC over all pixels of all images, plain or rebalanced.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

AUC_THRESHOLDS = np.arange(0, 151, dtype=np.float64)  # Zhang et al. 2016: 0..150 step 1


def mse_ab(lab_true: np.ndarray, lab_pred: np.ndarray) -> float:
    """Mean squared error over the a and b channels, in ab units squared."""
    d = lab_true[..., 1:].astype(np.float64) - lab_pred[..., 1:].astype(np.float64)
    return float(np.mean(d**2))


def psnr(rgb_true: np.ndarray, rgb_pred: np.ndarray) -> float:
    """PSNR in dB over all RGB values of uint8 images (data range 255). Identical -> inf."""
    if np.array_equal(rgb_true, rgb_pred):
        return float("inf")
    return float(peak_signal_noise_ratio(rgb_true, rgb_pred, data_range=255))


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


def ab_error(lab_true: np.ndarray, lab_pred: np.ndarray) -> np.ndarray:
    """Per-pixel ||ab_pred - ab_true||_2."""
    return np.linalg.norm(lab_true[..., 1:].astype(np.float64)
                          - lab_pred[..., 1:].astype(np.float64), axis=-1)


class ErrorCurve:
    """CMF(t) for t = 0..150: the (weighted) share of pixels with ab error <= t, over every
    pixel added. AuC (Zhang et al.) is its mean over the thresholds. With weights 1/p of each
    pixel's true ab bin it is the rebalanced AuC (their section 3.1): every colour counts
    as much as every other, so rare saturated colours are not drowned by gray ones."""

    def __init__(self):
        self.hist = np.zeros(len(AUC_THRESHOLDS) + 1)  # last bin: errors above 150

    def add(self, error: np.ndarray, weight: np.ndarray | None = None) -> None:
        cells = np.minimum(np.ceil(error.ravel()), len(AUC_THRESHOLDS)).astype(np.int64)
        w = None if weight is None else weight.ravel().astype(np.float64)
        self.hist += np.bincount(cells, weights=w, minlength=len(self.hist))

    def cmf(self) -> np.ndarray:
        return np.cumsum(self.hist)[:-1] / max(self.hist.sum(), 1e-300)

    def auc(self) -> float:
        return float(np.mean(self.cmf()))


def auc(lab_true: np.ndarray, lab_pred: np.ndarray, weight: np.ndarray | None = None) -> float:
    """AuC of one image (plain, or weighted per pixel)."""
    curve = ErrorCurve()
    curve.add(ab_error(lab_true, lab_pred), weight)
    return curve.auc()
