"""Issue 19's pieces against hand-built cases: the test split, the decodings and refinements of
model/decoders.py, and the moving average of the weights."""

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000

from colorize.data.split import split_of
from colorize.model import bins, decoders
from colorize.train.loop import EMA
from conftest import bench_script, network


def _bin(a: float, b: float) -> int:
    q = int(bins.nearest_bin(np.array([a, b], np.float32)))
    assert tuple(bins.centres()[q]) == (a, b)  # a bin centre, not just near one
    return q


def _probs(mass: dict[tuple[float, float], float]) -> torch.Tensor:
    """One pixel's distribution (1, Q, 1, 1) with the given mass on the given centres."""
    p = torch.zeros(1, bins.num_bins(), 1, 1, dtype=torch.float64)
    for (a, b), m in mass.items():
        p[0, _bin(a, b), 0, 0] = m
    return p


# --- the test split ---------------------------------------------------------------------------

def test_split_ends_of_the_hash_range_are_validation_and_test():
    assert split_of("0" * 64, 0.1, 0.1) == "val"
    assert split_of("f" * 64, 0.1, 0.1) == "test"
    assert split_of("f" * 64, 0.1, 0.0) == "train"  # no test split: it trains
    assert split_of("8" * 64, 0.1, 0.1) == "train"
    # u = 0.25 exactly: validation below 0.25, test from 0.75 up.
    assert split_of("4" + "0" * 63, 0.25, 0.25) == "train"
    assert split_of("c" + "0" * 63, 0.25, 0.25) == "test"
    assert split_of("bfffffffffffffff", 0.25, 0.25) == "train"


def test_adding_a_test_split_moves_no_validation_photo():
    rng = np.random.default_rng(0)
    ids = ["".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(2000)]
    before = [split_of(i, 0.2) for i in ids]
    after = [split_of(i, 0.2, 0.15) for i in ids]
    assert [i for i, s in zip(ids, before, strict=True) if s == "val"] == \
        [i for i, s in zip(ids, after, strict=True) if s == "val"]
    assert all(b == "train" for b, a in zip(before, after, strict=True) if a == "test")
    assert 0.10 < after.count("test") / len(ids) < 0.20


# --- chromatic fading ---------------------------------------------------------------------------

def test_fading_keeps_a_certain_colour_and_fades_opposite_hues_to_gray():
    certain = decoders.fading(_probs({(30, 0): 1.0}), 0.5, 1.0)
    assert torch.allclose(certain[0, :, 0, 0], torch.tensor([30.0, 0.0], dtype=torch.float64))
    torn = decoders.fading(_probs({(30, 0): 0.5, (-30, 0): 0.5}), 0.5, 1.0)
    assert torch.allclose(torn, torch.zeros_like(torn), atol=1e-9)


def test_fading_chroma_is_the_quantile_of_the_chroma_distribution():
    p = _probs({(10, 0): 0.5, (40, 0): 0.5})  # one hue, R = 1
    assert decoders.fading(p, 0.5, 2.0)[0, :, 0, 0].tolist() == pytest.approx([10, 0])
    assert decoders.fading(p, 0.7, 2.0)[0, :, 0, 0].tolist() == pytest.approx([40, 0])


def test_fading_by_hue_spread_to_the_power_gamma():
    # Half at a* = 30, half at b* = 30: mean (15, 15), R = |mean| / 30 = 1/sqrt 2.
    p = _probs({(30, 0): 0.5, (0, 30): 0.5})
    assert decoders.fading(p, 0.5, 1.0)[0, :, 0, 0].tolist() == pytest.approx([15, 15])
    # gamma 2: chroma 30 * 1/2 = 15 along the diagonal.
    expected = 15 / np.sqrt(2)
    assert decoders.fading(p, 0.5, 2.0)[0, :, 0, 0].tolist() == pytest.approx(
        [expected, expected])
    # gamma 0: the full median chroma (30) along the mean's hue.
    assert decoders.fading(p, 0.5, 0.0)[0, :, 0, 0].tolist() == pytest.approx(
        [30 / np.sqrt(2), 30 / np.sqrt(2)])


# --- minimum expected CIEDE2000 ---------------------------------------------------------------

def test_ciede2000_table_is_skimage_at_any_lightness():
    c = bins.centres().astype(np.float64)
    table = decoders.ciede2000_table()
    rng = np.random.default_rng(1)
    for i, j in rng.integers(0, len(c), (20, 2)):
        for L in (10.0, 50.0, 90.0):
            d = deltaE_ciede2000(np.array([L, *c[i]]), np.array([L, *c[j]]))
            assert table[i, j] == pytest.approx(d, rel=1e-5, abs=1e-5)


def test_expected_decoding_is_the_brute_force_minimum_of_expected_ciede2000():
    mass = {(30, 0): 0.45, (-30, 0): 0.35, (0, 60): 0.2}
    centres = bins.centres().astype(np.float64)
    risk = [sum(m * deltaE_ciede2000(np.array([50.0, a, b]), np.array([50.0, *cand]))
                for (a, b), m in mass.items()) for cand in centres]
    best = centres[int(np.argmin(risk))]
    got = decoders.expected(_probs(mass))[0, :, 0, 0].numpy()
    assert got.tolist() == best.tolist()
    # A certain colour decodes to itself.
    assert decoders.expected(_probs({(-20, 40): 1.0}))[0, :, 0, 0].tolist() == [-20, 40]


def test_chroma_bonus_is_the_brute_force_minimum_of_risk_minus_bonus_times_chroma():
    mass = {(30, 0): 0.45, (-30, 0): 0.35, (0, 60): 0.2}
    centres = bins.centres().astype(np.float64)
    risk = np.array([sum(m * deltaE_ciede2000(np.array([50.0, a, b]), np.array([50.0, *cand]))
                         for (a, b), m in mass.items()) for cand in centres])
    chroma = np.hypot(centres[:, 0], centres[:, 1])
    picks = []
    for bonus in (0.1, 0.3, 1.0):
        best = centres[int(np.argmin(risk - bonus * chroma))]
        got = decoders.expected(_probs(mass), chroma_bonus=bonus)[0, :, 0, 0].numpy()
        assert got.tolist() == best.tolist()
        picks.append(np.hypot(*got))
    assert picks[0] <= picks[1] <= picks[2] and picks[0] < picks[2]  # more bonus, more colour
    # A gray-certain pixel stays gray until the bonus pays for the cheapest step away from it.
    gray = _probs({(0, 0): 1.0})
    step = min(deltaE_ciede2000(np.array([50.0, 0, 0]), np.array([50.0, *c])) / np.hypot(*c)
               for c in centres if np.hypot(*c) > 0)
    assert decoders.expected(gray, step * 0.99)[0, :, 0, 0].tolist() == [0, 0]
    assert decoders.expected(gray, step * 1.01)[0, :, 0, 0].tolist() != [0, 0]


def test_blend_is_vivid_where_sure_pale_where_unsure_and_linear_between():
    vivid = torch.tensor([40.0, 10.0]).reshape(1, 2, 1, 1)
    accurate = torch.tensor([10.0, 0.0]).reshape(1, 2, 1, 1)
    uniform = torch.zeros(1, bins.num_bins(), 1, 1)
    assert torch.allclose(decoders.blend(uniform, vivid, accurate, 1.0), accurate, atol=1e-5)
    sure = torch.full((1, bins.num_bins(), 1, 1), -200.0)
    sure[0, 0] = 0.0
    assert torch.allclose(decoders.blend(sure, vivid, accurate, 1.0), vivid, atol=1e-4)
    # Two bins with logits 1 and 0 (the rest ~e-51): c = 1 - H / log Q, H of (e, 1) / (1 + e).
    z = torch.full((1, bins.num_bins(), 1, 1), -50.0)
    z[0, 0], z[0, 1] = 1.0, 0.0
    p = np.e / (1 + np.e)
    c = 1 - -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(bins.num_bins())
    for power in (1.0, 2.0):
        want = c ** power * np.array([40.0, 10.0]) + (1 - c ** power) * np.array([10.0, 0.0])
        got = decoders.blend(z, vivid, accurate, power)[0, :, 0, 0].numpy()
        assert got == pytest.approx(want, abs=1e-3)


# --- the lightness gamut ---------------------------------------------------------------------

def test_lightness_gamut_from_a_hand_made_split():
    # One 8x8 training photo: top half L* 15 (band 1) in a* 30, bottom half L* 75 (band 7) in
    # (-20, 40). At stride 4, two blocks of each.
    L = np.zeros((1, 8, 8), np.float32)
    ab = np.zeros((1, 2, 8, 8), np.float32)
    L[0, :4], ab[0, 0, :4] = 15, 30
    L[0, 4:], ab[0, 0, 4:], ab[0, 1, 4:] = 75, -20, 40
    counts = decoders.lightness_counts(L, ab, 4)
    assert counts.sum() == 4
    assert counts[1, _bin(30, 0)] == 2 and counts[7, _bin(-20, 40)] == 2
    allowed = decoders.allowed_bins(counts)
    gray = _bin(0, 0)
    assert set(np.flatnonzero(allowed[1])) == {_bin(30, 0), gray}
    assert set(np.flatnonzero(allowed[7])) == {_bin(-20, 40), gray}
    assert set(np.flatnonzero(allowed[4])) == {gray}  # never seen: gray only
    # Uniform logits over a 2x2 grid: each pixel keeps its band's two bins only, so the mean
    # colour is halfway between gray and the band's colour.
    logits = torch.zeros(1, bins.num_bins(), 2, 2)
    masked = decoders.mask_by_lightness(logits, torch.from_numpy(L)[:, None],
                                        torch.from_numpy(allowed))
    ab_out = bins.annealed_mean(masked, 1.0)
    assert ab_out[0, :, 0, 0].tolist() == pytest.approx([15, 0], abs=1e-3)
    assert ab_out[0, :, 1, 1].tolist() == pytest.approx([-10, 20], abs=1e-3)


# --- guided upsampling ------------------------------------------------------------------------

def test_guided_filter_keeps_colour_that_is_linear_in_lightness():
    rng = np.random.default_rng(2)
    L = torch.from_numpy(rng.uniform(0, 100, (1, 1, 16, 16)))
    ab = torch.cat([0.5 * L - 10, -0.2 * L + 30], 1)
    out = decoders.guided(ab, L, 2, 1e-8)
    assert torch.allclose(out, ab, atol=1e-3)


def test_guided_filter_with_huge_eps_is_a_double_box_blur():
    L = torch.rand(1, 1, 9, 9, dtype=torch.float64) * 100
    ab = torch.zeros(1, 2, 9, 9, dtype=torch.float64)
    ab[..., 4, 4] = 9.0  # one coloured pixel: a 3x3 box spreads it to 1 per pixel ...
    out = decoders.guided(ab, L, 1, 1e12)
    assert out[0, 0, 4, 4].item() == pytest.approx(1.0, abs=1e-6)  # ... twice: 9/9 then 9*1/9
    assert out[0, 0, 2, 2].item() == pytest.approx(1 / 9, abs=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.0, abs=1e-9)


# --- the moving average of the weights ---------------------------------------------------------

def test_ema_against_hand_values():
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema = EMA(net, decay=0.3)
    expected, value = 1.0, 1.0
    for n, value in enumerate((3.0, 5.0, -1.0), start=1):
        with torch.no_grad():
            net[0].weight.fill_(value)
        net[1].num_batches_tracked += 7
        ema.update(net)
        d = min(0.3, (1 + n) / (10 + n))  # 2/11, 3/12, then 0.3 caps 4/13
        expected = d * expected + (1 - d) * value
        assert ema.net[0].weight.item() == pytest.approx(expected)
    # by hand: 1 -> 2/11 + 9/11 * 3 = 29/11 -> 29/44 + 3/4 * 5 = 194/44 -> 0.3 * 194/44 - 0.7
    assert ema.net[0].weight.item() == pytest.approx(0.3 * 194 / 44 - 0.7)
    assert ema.net[1].num_batches_tracked.item() == 21  # integers are copied, not averaged
    assert not any(p.requires_grad for p in ema.net.parameters())


def test_entropy_temperature_is_vivid_where_sure_and_the_mean_where_unsure():
    uniform = torch.zeros(1, bins.num_bins(), 1, 1)  # entropy log Q: T = the unsure end (1)
    assert torch.allclose(decoders.entropy_tempered(uniform, 0.01, 1.0),
                          bins.annealed_mean(uniform, 1.0), atol=1e-5)
    # Two bins far above the rest (logits 1 and 0): p = e / (1 + e) and 1 / (1 + e), the rest
    # ~e-51 each, so T lies between the two ends by that entropy over log Q.
    z = torch.full((1, bins.num_bins(), 1, 1), -50.0)
    z[0, _bin(30, 0)], z[0, _bin(-30, 0)] = 1.0, 0.0
    p = np.e / (1 + np.e)
    h = -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(bins.num_bins())
    t = 0.2 + 0.8 * h
    expected = bins.annealed_mean(z / t, 1.0)
    assert torch.allclose(decoders.entropy_tempered(z, 0.2, 1.0), expected, atol=1e-3)
    # bench/quality.py's entropy candidate is that decoding, its logits divided by no other T
    quality = bench_script("quality")
    ab = quality.decode(network(), quality.Way("entropy", 0.2, 0.0, quantile=1.0), z, None,
                        None, None)
    assert ab.shape == (1, 2, 4, 4)  # upsampled from the logits' 1/4
    assert torch.allclose(ab, expected.expand(1, 2, 4, 4), atol=1e-3)
