"""Quantized ab space for the classification head (Zhang et al. 2016, "Colorful Image
Colorization"): bins, soft-encoded targets, the smoothed prior, rebalancing weights and the
annealed-mean decoding.

Bins are the centres of a 10-unit grid in ab that 8-bit sRGB actually reaches: every one of the
16.7M sRGB colours, converted to LAB, rounded to its nearest centre. That gives Q = 262 bins
(Zhang et al. count 313 with a looser gamut); `_ROWS` stores them compactly and a test recomputes
them from all 16.7M colours.

Soft encoding (5 nearest bins, Gaussian sigma 5) is looked up in a precomputed table over a
1-unit ab grid instead of searching all Q bins for every pixel on every step: a target costs one
gather per pixel. The table's positions are rounded to the nearest ab unit, which moves a
target's weights by a fraction of a percent (sigma is 5 units).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from colorize.errors import UserError

GRID = 10.0  # ab units between bin centres
SIGMA = 5.0  # soft-encoding and prior-smoothing Gaussian, in ab units
NEIGHBOURS = 5  # bins each target pixel is spread over
TABLE_RADIUS = 110  # the lookup table covers ab in [-110, 110] at 1-unit steps
# Share of the uniform distribution mixed into the prior used by the prior correction at
# inference, as rebalancing mixes it in training: a colour the training split (almost) never
# showed gets a bounded boost, at most A log(5Q) nats. With the raw prior (p down to 1e-18 on
# the default data) the boost swamped every photo (CIEDE2000 38.5 against gray's 13.2); 0.2
# keeps most of the effect on miniplaces (README, "Vivid and still right").
CORRECTION_UNIFORM = 0.2

# In-gamut bins: for each a centre (in grid units), the first and last b centre.
_ROWS = {-9: (8, 8), -8: (4, 8), -7: (2, 9), -6: (0, 9), -5: (-2, 9), -4: (-3, 9),
         -3: (-4, 9), -2: (-4, 9), -1: (-5, 9), 0: (-6, 9), 1: (-7, 8), 2: (-8, 8),
         3: (-8, 8), 4: (-9, 8), 5: (-9, 7), 6: (-10, 7), 7: (-11, 7), 8: (-11, 7),
         9: (-9, 0), 10: (-7, -5)}


@lru_cache(maxsize=1)
def centres() -> np.ndarray:
    """(Q, 2) float32 ab centres of the in-gamut bins, ordered by a, then b."""
    pts = [(a * GRID, b * GRID) for a, (lo, hi) in sorted(_ROWS.items())
           for b in range(lo, hi + 1)]
    return np.array(pts, np.float32)


def num_bins() -> int:
    return len(centres())


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray]:
    """Soft encoding of every integer ab in [-R, R]^2: (cells, 5) bin indices (nearest first)
    and (cells, 5) Gaussian weights summing to 1."""
    axis = np.arange(-TABLE_RADIUS, TABLE_RADIUS + 1, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    d2 = ((grid[:, None, :] - centres()[None]) ** 2).sum(-1)  # (cells, Q)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :NEIGHBOURS]
    near = np.take_along_axis(d2, idx, 1)
    w = np.exp(-(near - near[:, :1]) / (2 * SIGMA**2))  # relative to the nearest: no underflow
    return idx.astype(np.int64), (w / w.sum(1, keepdims=True)).astype(np.float32)


def _cells(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor):
    side = 2 * TABLE_RADIUS + 1
    lib = torch if isinstance(a, torch.Tensor) else np
    ia = lib.clip(lib.round(a) + TABLE_RADIUS, 0, side - 1)
    ib = lib.clip(lib.round(b) + TABLE_RADIUS, 0, side - 1)
    cell = ia * side + ib
    return cell.long() if lib is torch else cell.astype(np.int64)


def nearest_bin(ab: np.ndarray) -> np.ndarray:
    """ab (..., 2) in ab units -> index of the nearest bin (...)."""
    return _table()[0][_cells(ab[..., 0], ab[..., 1]), 0]


def soft_encode(ab: np.ndarray) -> np.ndarray:
    """ab (..., 2) -> (..., Q) soft targets (5 nearest bins, Gaussian sigma 5), for tests and
    plots; training uses SoftEncoder, which never builds the dense array."""
    idx, w = _table()
    cells = _cells(ab[..., 0], ab[..., 1])
    out = np.zeros((*ab.shape[:-1], num_bins()), np.float32)
    np.put_along_axis(out, idx[cells], w[cells], axis=-1)
    return out


class SoftEncoder(torch.nn.Module):
    """ab (N, 2, H, W) in ab units -> (indices, weights), each (N, 5, H, W): the sparse soft
    encoding as one table gather. Buffers move with .to(device)."""

    def __init__(self):
        super().__init__()
        idx, w = _table()
        self.register_buffer("idx", torch.from_numpy(idx), persistent=False)
        self.register_buffer("w", torch.from_numpy(w), persistent=False)

    def forward(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A non-finite target (a corrupted store) gets NaN weights, so the loss turns NaN and
        # training stops with its reason instead of an index error deep in the gather.
        finite = torch.isfinite(ab).all(1)  # (N, H, W)
        safe = torch.where(finite[:, None], ab, torch.zeros((), dtype=ab.dtype, device=ab.device))
        cells = _cells(safe[:, 0], safe[:, 1])
        w = torch.where(finite[..., None], self.w[cells], torch.full((), float("nan"),
                                                                      device=ab.device))
        return self.idx[cells].permute(0, 3, 1, 2), w.permute(0, 3, 1, 2)


def histogram(ab: np.ndarray) -> np.ndarray:
    """Counts of pixels per nearest bin; ab (..., 2) in ab units -> (Q,) float64."""
    return np.bincount(nearest_bin(ab).ravel(), minlength=num_bins()).astype(np.float64)


def smooth_prior(counts: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Empirical distribution over the bins, smoothed with a Gaussian over ab (sigma in ab
    units) and renormalized: the prior p of the paper."""
    c = centres().astype(np.float64)
    kernel = np.exp(-((c[:, None] - c[None]) ** 2).sum(-1) / (2 * sigma**2))
    p = kernel @ (counts / max(counts.sum(), 1e-12))
    return p / p.sum()


def load_prior(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no ab prior (run the prior stage: dvc repro prior)")
    prior = np.load(path, allow_pickle=False)
    if prior.shape != (num_bins(),):
        raise UserError(f"{path}: holds {prior.shape[0]} bins, this version uses "
                        f"{num_bins()}; rerun the prior stage")
    return prior


def rebalance_weights(prior: np.ndarray, strength: float) -> np.ndarray:
    """Per-bin loss weights w ~ (strength * p + (1 - strength) / Q)^-1 with E_p[w] = 1.

    `strength` is 1 - lambda of the paper's formula ((1 - lambda) p + lambda / Q)^-1, so that
    0 turns rebalancing off (all weights 1) and 0.5 is the paper's setting either way.
    """
    w = 1.0 / with_uniform(prior, 1.0 - strength)
    return w / float((prior * w).sum())


def with_uniform(prior: np.ndarray, share: float) -> np.ndarray:
    """(1 - share) p + share / Q: the prior mixed with the uniform distribution over the bins."""
    return (1.0 - share) * prior + share / len(prior)


def annealed_mean(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Logits (N, Q, H, W) over the bins -> ab (N, 2, H, W) in ab units by the annealed mean:
    softmax(logits / T) weighted centres. T = 1 is the mean of the predicted distribution,
    T -> 0 its mode."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, torch.from_numpy(centres()).to(probs.device))
