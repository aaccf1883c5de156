import numpy as np
import pytest

from colorize import imaging
from colorize.evaluate import metrics as M


def _lab(L, a, b, shape=(4, 4)):
    out = np.zeros((*shape, 3))
    out[..., 0], out[..., 1], out[..., 2] = L, a, b
    return out


def test_mse_ab_hand_value():
    t, p = _lab(50, 10, -20), _lab(50, 13, -16)
    assert M.mse_ab(t, p) == pytest.approx((3**2 + 4**2) / 2)


def test_psnr_hand_value():
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 10, np.uint8)
    assert M.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100))
    assert M.psnr(a, a) == float("inf")


def test_ssim_identical_is_one_and_different_is_less():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert M.ssim(img, img) == pytest.approx(1.0)
    assert M.ssim(img, 255 - img) < 0.5


def test_ciede2000_reference_pair():
    # Sharma, Wu and Dalal (2005), test pair 1: L 50, a 2.6772, b -79.7751 vs a 0, b -82.7485.
    t, p = _lab(50, 2.6772, -79.7751), _lab(50, 0.0, -82.7485)
    assert M.ciede2000(t, p) == pytest.approx(2.0425, abs=1e-4)


def test_auc_hand_values():
    t = _lab(50, 0, 0, shape=(1, 2))
    p = t.copy()
    p[0, 1, 1] = 10.5  # one pixel perfect, one 10.5 units off
    # CMF(t) = 0.5 for t = 0..10, 1.0 for t = 11..150 -> mean = (11*0.5 + 140*1) / 151
    assert M.auc(t, p) == pytest.approx((11 * 0.5 + 140) / 151)
    assert M.auc(t, t) == 1.0
    far = t.copy()
    far[..., 1] = 200  # beyond the last threshold
    assert M.auc(t, far) == 0.0


def test_colourfulness_hand_value():
    # Two pixels: pure red (255,0,0) and black. rg = [255, 0], yb = [127.5, 0].
    img = np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)
    std = np.sqrt((255 / 2) ** 2 + (127.5 / 2) ** 2)
    mean = np.sqrt((255 / 2) ** 2 + (127.5 / 2) ** 2)
    assert imaging.colourfulness(img) == pytest.approx(std + 0.3 * mean)
    assert imaging.colourfulness(np.full((3, 3, 3), 128, np.uint8)) == 0.0
