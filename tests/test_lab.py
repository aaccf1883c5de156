import numpy as np
from skimage.color import lab2rgb, rgb2lab

from colorize import lab


def _random_rgb(seed=0, n=64):
    return np.random.default_rng(seed).integers(0, 256, (n, n, 3), dtype=np.uint8)


def test_rgb_to_lab_matches_skimage_within_stated_tolerance():
    rgb = _random_rgb()
    ours = lab.rgb_to_lab(rgb)
    ref = rgb2lab(rgb)
    err = np.abs(ours - ref).reshape(-1, 3).max(axis=0)
    # Stated in README: L <= 0.2, a <= 0.5, b <= 0.35 (max abs over all 8-bit colours sampled).
    assert err[0] <= 0.2 and err[1] <= 0.5 and err[2] <= 0.35, err


def test_full_gamut_extremes_within_declared_ab_range():
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 15)] * 3), -1).reshape(1, -1, 3)
    values = lab.rgb_to_lab(cube.astype(np.uint8))
    assert values[..., 0].min() >= 0 and values[..., 0].max() <= lab.L_MAX + 1e-3
    assert values[..., 1:].min() > lab.AB_MIN and values[..., 1:].max() < lab.AB_MAX


def test_lab_round_trip_to_rgb():
    rgb = _random_rgb(1)
    back = lab.lab_to_rgb8(lab.rgb_to_lab(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 1
    np.testing.assert_allclose(lab.lab_to_rgb(rgb2lab(rgb)), lab2rgb(rgb2lab(rgb)), atol=2e-3)


def test_uint16_input_is_scaled():
    rgb8 = _random_rgb(2)
    rgb16 = rgb8.astype(np.uint16) * 257
    np.testing.assert_allclose(lab.rgb_to_lab(rgb16), lab.rgb_to_lab(rgb8), atol=1e-3)


def test_storage_precision_round_trip_below_half_ab_unit():
    values = lab.rgb_to_lab(_random_rgb(3, 256))
    stored = values.astype(lab.STORE_DTYPE).astype(np.float32)
    assert np.abs(stored[..., 1:] - values[..., 1:]).max() < 0.07  # README: max 0.0625
    assert np.abs(stored[..., 0] - values[..., 0]).max() < 0.04


def test_out_of_range_ab_is_clamped_not_wrapped():
    extreme = np.zeros((2, 2, 3), np.float32)
    extreme[..., 0] = 50
    extreme[..., 1] = 500
    rgb = lab.lab_to_rgb(extreme)
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1


def test_normalization_inverse():
    ab = np.linspace(-100, 100, 11)
    np.testing.assert_allclose(lab.denormalize_ab(lab.normalize_ab(ab)), ab)
    assert lab.normalize_l(np.array([0.0, 100.0])).tolist() == [-1.0, 1.0]
