"""The classification head's ab bins, soft encoding, prior, rebalancing and annealed mean,
against hand-computed values."""

import math

import cv2
import numpy as np
import pytest
import torch

from colorize.model import bins


def _bin(a, b):
    return int(np.flatnonzero((bins.centres() == (a, b)).all(1))[0])


@pytest.mark.slow  # converts all 16.7M sRGB colours
def test_bins_are_exactly_the_cells_reached_by_8bit_srgb():
    v = np.arange(256, dtype=np.float32) / 255
    rgb = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(4096, 4096, 3)
    ab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 1:].reshape(-1, 2)
    reached = {tuple(x) for x in np.unique(np.round(ab / 10).astype(int), axis=0)}
    assert reached == {(int(a) // 10, int(b) // 10) for a, b in bins.centres()}
    assert bins.num_bins() == 262


def test_soft_encoding_on_a_bin_centre():
    t = bins.soft_encode(np.array([0.0, 0.0]))
    # Itself at distance 0 and its four neighbours at 10: weights 1 and e^-2, normalized.
    z = 1 + 4 * math.exp(-2)
    assert t[_bin(0, 0)] == pytest.approx(1 / z, abs=1e-6)
    for a, b in ((10, 0), (-10, 0), (0, 10), (0, -10)):
        assert t[_bin(a, b)] == pytest.approx(math.exp(-2) / z, abs=1e-6)
    assert np.count_nonzero(t) == 5 and t.sum() == pytest.approx(1)


def test_soft_encoding_between_bins():
    t = bins.soft_encode(np.array([3.0, 2.0]))
    # Squared distances to the five nearest centres, by hand.
    d2 = {(0, 0): 13, (10, 0): 53, (0, 10): 73, (10, 10): 113, (0, -10): 153}
    w = {k: math.exp(-v / 50) for k, v in d2.items()}
    z = sum(w.values())
    for (a, b), wk in w.items():
        assert t[_bin(a, b)] == pytest.approx(wk / z, abs=1e-6)
    assert np.count_nonzero(t) == 5


def test_sparse_encoder_matches_the_dense_encoding():
    ab = np.random.default_rng(0).uniform(-80, 80, (2, 2, 3, 4)).round().astype(np.float32)
    idx, w = bins.SoftEncoder()(torch.from_numpy(ab))
    dense = np.zeros((2, bins.num_bins(), 3, 4), np.float32)
    np.put_along_axis(dense, idx.numpy(), w.numpy(), axis=1)
    np.testing.assert_allclose(dense, bins.soft_encode(ab.transpose(0, 2, 3, 1))
                               .transpose(0, 3, 1, 2), atol=1e-6)
    assert (idx[:, 0].numpy() == bins.nearest_bin(ab.transpose(0, 2, 3, 1))).all()


def test_prior_smoothing_spreads_one_bin_as_a_gaussian():
    counts = np.zeros(bins.num_bins())
    counts[_bin(0, 0)] = 1000
    p = bins.smooth_prior(counts)
    assert p.sum() == pytest.approx(1)
    assert p[_bin(10, 0)] / p[_bin(0, 0)] == pytest.approx(math.exp(-2))
    assert p[_bin(10, 10)] / p[_bin(0, 0)] == pytest.approx(math.exp(-4))


def test_rebalancing_weights_have_mean_one_and_fall_as_p_rises():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(bins.num_bins(), 0.3))
    for strength in (0.1, 0.5, 0.9):
        w = bins.rebalance_weights(p, strength)
        assert (p * w).sum() == pytest.approx(1)
        order = np.argsort(p)
        assert np.all(np.diff(w[order]) <= 1e-12)  # rarer colours weigh more
    np.testing.assert_allclose(bins.rebalance_weights(p, 0.0), 1.0)
    # The paper's form at lambda = 0.5: w ~ 1 / (0.5 p + 0.5 / Q).
    w = bins.rebalance_weights(p, 0.5)
    raw = 1 / (0.5 * p + 0.5 / len(p))
    np.testing.assert_allclose(w, raw / (p * raw).sum())


def _logits(probs: dict) -> torch.Tensor:
    z = torch.full((1, bins.num_bins(), 1, 1), -1e4)
    for (a, b), q in probs.items():
        z[0, _bin(a, b)] = math.log(q)
    return z


def test_annealed_mean_is_the_mean_at_one_and_the_mode_as_t_falls():
    z = _logits({(0, 0): 0.5, (10, 0): 0.3, (20, 0): 0.2})
    ab = bins.annealed_mean(z, 1.0)[0, :, 0, 0]
    assert ab.tolist() == pytest.approx([0.3 * 10 + 0.2 * 20, 0.0], abs=1e-4)
    # T = 0.5 squares the probabilities: (0.25, 0.09, 0.04) / 0.38.
    ab = bins.annealed_mean(z, 0.5)[0, :, 0, 0]
    assert ab[0].item() == pytest.approx((0.09 * 10 + 0.04 * 20) / 0.38, abs=1e-4)
    ab = bins.annealed_mean(z, 0.01)[0, :, 0, 0]
    assert ab.tolist() == pytest.approx([0.0, 0.0], abs=1e-3)  # the mode
