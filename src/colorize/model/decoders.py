"""Ways to turn the classification head's distribution over the ab bins into one colour, and
to refine the result. The annealed mean (bins.annealed_mean) is the default; these are the
alternatives that issue 19 measured (README, "Vivid and right"); the tests check each against
hand-built cases.

  fading        chromatic fading (Larsson et al. 2016): the hue of the distribution's mean,
                the chroma of a quantile of its chroma distribution, faded toward gray by the
                hue concentration R (1 = every likely bin in one direction) to the power gamma
  entropy       a per-pixel temperature from the predicted distribution's entropy H:
                T = T_sure + (T_unsure - T_sure) H / log Q: confident pixels get the vivid
                annealed mean, uncertain ones the pale one
  expected      minimum expected CIEDE2000: the bin centre whose expected CIEDE2000 distance
                to the predicted distribution is smallest (the Bayes decision for the metric);
                with a chroma bonus, that risk minus lambda x the bin's chroma: per pixel, the
                best trade of expected error for colour that the distribution allows
  blend         a vivid and an accurate decoding mixed per pixel by the confidence
                (1 - H / log Q)^power: the regression-and-distribution blend of issue 19, with
                the accurate decoding standing in for a regression branch
  lightness gamut  logits of the bins the training split never showed at a pixel's L* band are
                masked before any decoding (CT2's luminance-selecting idea, from data)
  guided        the guided filter (He et al. 2010) on the upsampled ab with L* as the guide:
                colour edges follow lightness edges

All functions work on torch tensors: logits (N, Q, h, w), ab in ab units (N, 2, h, w).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from colorize.model import bins

L_BANDS = 10  # lightness gamut: bands of 10 L* units


@lru_cache(maxsize=1)
def _chroma() -> np.ndarray:
    c = bins.centres().astype(np.float64)
    return np.hypot(c[:, 0], c[:, 1])


def fading(probs: torch.Tensor, quantile: float, gamma: float) -> torch.Tensor:
    """Chromatic fading. probs (N, Q, h, w) sum to 1 over Q -> ab (N, 2, h, w).

    hue     the direction of the mean colour sum_q p_q ab_q
    chroma  the `quantile` of the chroma distribution (the smallest bin chroma whose
            cumulative probability reaches it), times R^gamma, where
            R = |sum_q p_q ab_q| / sum_q p_q |ab_q| in [0, 1] is 1 when all the mass lies in
            one direction and small when likely colours disagree in hue.
    With quantile at the mean chroma and gamma 1 this is the plain mean."""
    chroma = _chroma()
    order = np.argsort(chroma, kind="stable")
    c_sorted = torch.as_tensor(chroma[order], dtype=probs.dtype, device=probs.device)
    p = probs[:, torch.as_tensor(order, device=probs.device)]
    below = (torch.cumsum(p, 1) < quantile).sum(1).clamp(max=len(order) - 1)  # (N, h, w)
    q_chroma = c_sorted[below]
    centres = torch.as_tensor(bins.centres(), dtype=probs.dtype, device=probs.device)
    mean = torch.einsum("nqhw,qc->nchw", probs, centres)
    mean_chroma = torch.einsum("nqhw,q->nhw", probs,
                               torch.as_tensor(chroma, dtype=probs.dtype, device=probs.device))
    norm = mean.norm(dim=1)
    r = (norm / mean_chroma.clamp_min(1e-6)).clamp(0, 1)
    direction = mean / norm.clamp_min(1e-6)[:, None]
    return direction * (q_chroma * r ** gamma)[:, None]


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """1 - H / log Q of softmax(logits) (N, Q, h, w) -> (N, 1, h, w): 1 for one certain bin,
    0 for the uniform distribution."""
    logp = torch.log_softmax(logits.float(), 1)
    h = -(logp.exp() * logp).sum(1, keepdim=True) / np.log(logits.shape[1])
    return (1 - h).clamp(0, 1)


def entropy_tempered(logits: torch.Tensor, sure: float, unsure: float) -> torch.Tensor:
    """The annealed mean at a per-pixel temperature from the entropy of softmax(logits)
    (normalized by log Q: 0 for one certain bin, 1 for the uniform). logits (N, Q, h, w)."""
    t = sure + (unsure - sure) * (1 - confidence(logits))
    return bins.annealed_mean(logits.float() / t, 1.0)


def blend(logits: torch.Tensor, vivid: torch.Tensor, accurate: torch.Tensor, power: float
          ) -> torch.Tensor:
    """c vivid + (1 - c) accurate with c = confidence(logits)^power: the vivid colour where
    the network is sure, the accurate (pale) one where it is not. ab (N, 2, h, w) each."""
    c = confidence(logits) ** power
    return c * vivid + (1 - c) * accurate


@lru_cache(maxsize=1)
def ciede2000_table() -> np.ndarray:
    """(Q, Q) CIEDE2000 between bin centres at equal L* (with no lightness difference the
    formula does not depend on L*, so one table serves every pixel)."""
    from skimage.color import deltaE_ciede2000

    c = bins.centres().astype(np.float64)
    q = len(c)
    a = np.concatenate([np.full((q, q, 1), 50.0), np.broadcast_to(c[:, None], (q, q, 2))], -1)
    b = np.concatenate([np.full((q, q, 1), 50.0), np.broadcast_to(c[None], (q, q, 2))], -1)
    return deltaE_ciede2000(a, b).astype(np.float32)


def expected(probs: torch.Tensor, chroma_bonus: float = 0.0) -> torch.Tensor:
    """Minimum expected CIEDE2000: for each pixel the bin centre j minimizing
    sum_q p_q D(q, j) - chroma_bonus * |ab_j|. probs (N, Q, h, w) -> ab (N, 2, h, w).

    With the bonus (lambda CIEDE2000 units per unit of chroma) this is the Lagrangian of
    "least expected error at this much colour": if the probabilities were calibrated, no
    per-pixel decoding of them could have both more mean chroma and less expected error."""
    table = torch.as_tensor(ciede2000_table(), dtype=probs.dtype, device=probs.device)
    risk = torch.einsum("nqhw,qj->njhw", probs, table)
    if chroma_bonus:
        chroma = torch.as_tensor(_chroma(), dtype=probs.dtype, device=probs.device)
        risk = risk - chroma_bonus * chroma.reshape(1, -1, 1, 1)
    centres = torch.as_tensor(bins.centres(), dtype=probs.dtype, device=probs.device)
    return centres[risk.argmin(1)].permute(0, 3, 1, 2)


def band_of(L: torch.Tensor) -> torch.Tensor:
    """L* in [0, 100] -> band index 0..L_BANDS-1."""
    return (L / (100.0 / L_BANDS)).floor().clamp(0, L_BANDS - 1).long()


def lightness_counts(L: np.ndarray, ab: np.ndarray, stride: int) -> np.ndarray:
    """(L_BANDS, Q) counts of nearest bins per L* band, at the logits' resolution (L (N, H, W)
    and ab (N, 2, H, W) averaged over stride x stride blocks, as the network sees them)."""
    Lt = F.avg_pool2d(torch.as_tensor(L, dtype=torch.float32)[:, None], stride)[:, 0]
    abt = F.avg_pool2d(torch.as_tensor(ab, dtype=torch.float32), stride)
    band = band_of(Lt).numpy().ravel()
    q = bins.nearest_bin(abt.permute(0, 2, 3, 1).numpy()).ravel()
    counts = np.zeros((L_BANDS, bins.num_bins()))
    np.add.at(counts, (band, q), 1)
    return counts


def allowed_bins(counts: np.ndarray) -> np.ndarray:
    """(L_BANDS, Q) bool: bins seen at least once at that band. The gray bin is always allowed,
    so that no band is left without a colour."""
    allowed = counts > 0
    allowed[:, bins.nearest_bin(np.zeros(2))] = True
    return allowed


def mask_by_lightness(logits: torch.Tensor, L: torch.Tensor, allowed: torch.Tensor
                      ) -> torch.Tensor:
    """Logits (N, Q, h, w) with the bins not allowed at each pixel's band set very low.
    L (N, 1, H, W) in L* units at the input size; allowed (L_BANDS, Q) bool."""
    stride = L.shape[-1] // logits.shape[-1]
    band = band_of(F.avg_pool2d(L.float(), stride)[:, 0])  # (N, h, w)
    ok = allowed.to(logits.device)[band].permute(0, 3, 1, 2)  # (N, Q, h, w)
    return logits.masked_fill(~ok, -1e4)


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided(ab: torch.Tensor, L: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The guided filter of ab (N, 2, H, W) with guide L (N, 1, H, W) in [0, 100]: locally
    ab = a L + b, fitted in windows of side 2 radius + 1, regularized by eps (on L / 100)."""
    guide = L.float() / 100.0
    mean_i = _box(guide, radius)
    var_i = _box(guide * guide, radius) - mean_i ** 2
    mean_p = _box(ab, radius)
    cov = _box(guide * ab, radius) - mean_i * mean_p
    a = cov / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)
