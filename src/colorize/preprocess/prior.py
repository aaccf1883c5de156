"""The `prior` stage: the distribution of ab over the classification bins, from the training
split only (never from validation photos).

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  prior  (data/prior/ab_prior.npy)   (Q,) float64, sums to 1: every training pixel counted in its
                                     nearest bin, then smoothed with a Gaussian (sigma 5)
  plot   (data/prior/ab_prior.png)   the ab plane: bin colours and log10 of the prior

The classification head's class rebalancing and evaluation's rebalanced AuC read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from colorize import lab
from colorize.files import atomic_path
from colorize.model import bins
from colorize.preprocess.store import LabStore


def compute_prior(train_dir: str | Path, chunk: int = 256) -> np.ndarray:
    """Smoothed prior over the bins from every pixel of the training store."""
    store = LabStore(train_dir)
    counts = np.zeros(bins.num_bins())
    for start in range(0, len(store), chunk):
        labs = store.batch(start, min(start + chunk, len(store)))
        counts += bins.histogram(labs[:, 1:].transpose(0, 2, 3, 1))
    return bins.smooth_prior(counts)


def prior(train_dir: str | Path, out_path: str | Path, plot_path: str | Path
                ) -> np.ndarray:
    p = compute_prior(train_dir)
    with atomic_path(out_path) as tmp:
        np.save(tmp, p)
    with atomic_path(plot_path) as tmp:
        plot_prior(p, tmp)
    top = np.argsort(p)[::-1][:3]
    print(f"prior: {bins.num_bins()} bins from {len(LabStore(train_dir))} training images; "
          "most likely (a, b): " + ", ".join(
              f"({bins.centres()[q][0]:.0f}, {bins.centres()[q][1]:.0f}) p={p[q]:.3f}"
              for q in top))
    return p


def plot_prior(prior: np.ndarray, path: str | os.PathLike) -> None:
    """Two panels over the ab plane: each bin's colour (at L = 65) and log10 p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = bins.centres()
    side = int(2 * lab.AB_MAX / bins.GRID) + 1
    ij = np.round((c + lab.AB_MAX) / bins.GRID).astype(int)
    colours = np.ones((side, side, 3))
    logp = np.full((side, side), np.nan)
    rgb = lab.lab_to_rgb(np.concatenate([np.full((len(c), 1), 65.0), c], 1)[None])[0]
    colours[ij[:, 1], ij[:, 0]] = rgb  # rows are b, columns a
    logp[ij[:, 1], ij[:, 0]] = np.log10(np.maximum(prior, 1e-12))
    extent = (-lab.AB_MAX - 5, lab.AB_MAX + 5, -lab.AB_MAX - 5, lab.AB_MAX + 5)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].imshow(colours, origin="lower", extent=extent)
    axes[0].set_title(f"the {len(c)} in-gamut ab bins (L = 65)")
    im = axes[1].imshow(logp, origin="lower", extent=extent, cmap="viridis")
    axes[1].set_title("log10 prior p(ab), training split")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xlabel("a*")
        ax.set_ylabel("b*")
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)
