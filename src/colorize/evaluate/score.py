"""Scoring a model on a LAB store: its metrics at each decoding, beside the gray baseline.
Shared by the evaluate stage and the sweep's per-epoch objective; the network runs on its own
device (model/inference.py), the metrics on the host. With `hint_count` k, every image gets k
colour hints simulated from its truth (model/hints.py, the same for every model): a network
that takes hints gets them, and the gray baseline becomes gray with the hint patches painted
in (what the hints alone give, without a network).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from colorize import imaging, lab
from colorize.decoding import Decoding
from colorize.evaluate import metrics as M
from colorize.model import bins, hints
from colorize.model.inference import predict_ab
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore

HEADLINE = ("ciede2000", "auc", "auc_rebalanced", "psnr", "ssim", "mse_ab",
            "colourfulness_ratio")
GRAY = "gray"


class Scores:
    """Accumulates one predictor's metrics over the validation images; `wanted` limits the
    per-image work to what is needed (a sweep scores only its objective)."""

    def __init__(self, wanted: tuple[str, ...] = HEADLINE):
        self.wanted = wanted
        self.rows: list[dict[str, float]] = []
        self.curve, self.rebalanced = M.ErrorCurve(), M.ErrorCurve()

    def add(self, L: np.ndarray, ab_true: np.ndarray, ab_pred: np.ndarray,
            weight: np.ndarray) -> None:
        """One image: L (H, W), ab (2, H, W), weight (H, W) = 1 / p of each true ab bin."""
        lab_true, lab_pred = lab.join_l_ab(L, ab_true), lab.join_l_ab(L, ab_pred)
        error = M.ab_error(lab_true, lab_pred)
        self.curve.add(error)
        self.rebalanced.add(error, weight)
        row = {}
        if "mse_ab" in self.wanted:
            row["mse_ab"] = M.mse_ab(lab_true, lab_pred)
        if "ciede2000" in self.wanted:
            row["ciede2000"] = M.ciede2000(lab_true, lab_pred)
        if {"psnr", "ssim", "colourfulness_ratio"} & set(self.wanted):
            rgb_true, rgb_pred = lab.lab_to_rgb8(lab_true), lab.lab_to_rgb8(lab_pred)
            if "psnr" in self.wanted:
                row["psnr"] = M.psnr(rgb_true, rgb_pred)
            if "ssim" in self.wanted:
                row["ssim"] = M.ssim(rgb_true, rgb_pred)
            if "colourfulness_ratio" in self.wanted:
                row.update(colourfulness=imaging.colourfulness(rgb_pred),
                           colourfulness_true=imaging.colourfulness(rgb_true))
        self.rows.append(row)

    def add_batch(self, L: np.ndarray, ab_true: np.ndarray, ab_pred: np.ndarray,
                  weight: np.ndarray) -> None:
        """A batch: L (N, H, W), ab (N, 2, H, W), weight (N, H, W)."""
        for i in range(len(L)):
            self.add(L[i], ab_true[i], ab_pred[i], weight[i])

    def summary(self) -> dict[str, float]:
        out = {"auc": self.curve.auc(), "auc_rebalanced": self.rebalanced.auc()}
        for k in ("mse_ab", "psnr", "ssim", "ciede2000"):
            if k in self.wanted:
                out[k] = float(np.mean([r[k] for r in self.rows]))
        if "colourfulness_ratio" in self.wanted:
            # Ratio of means: how colourful predictions are relative to the truth (1 = as much).
            truth = np.mean([r["colourfulness_true"] for r in self.rows])
            out["colourfulness_ratio"] = float(np.mean([r["colourfulness"] for r in self.rows])
                                               / truth)
        return {k: round(out[k], 4) for k in HEADLINE if k in out}


def score(model: Colorizer, store: LabStore, prior: np.ndarray, decodings: list[Decoding],
          batch_size: int = 16, wanted: tuple[str, ...] = HEADLINE, gray: bool = True,
          progress: bool = True, hint_count: int | None = None
          ) -> dict[Decoding | str, Scores]:
    """Scores of the model at each decoding (and of gray, under GRAY) over the store; no
    decodings: gray alone, without running the network."""
    inverse_prior = 1.0 / np.maximum(prior, 1e-12)
    scores: dict[Decoding | str, Scores] = {d: Scores(wanted) for d in decodings}
    if gray:
        scores[GRAY] = Scores(wanted)
    for start in tqdm(range(0, len(store), batch_size), desc="evaluate", unit="batch",
                      disable=not progress):
        labs = store.batch(start, min(start + batch_size, len(store)))
        L, ab_true = labs[:, 0], labs[:, 1:]
        weight = inverse_prior[bins.nearest_bin(ab_true.transpose(0, 2, 3, 1))]
        given = None if hint_count is None else hints.for_evaluation(ab_true, hint_count, start)
        preds = predict_ab(model, L, list(decodings), batch_size=len(L),
                           hints=given if model.config.hints else None) if decodings else []
        if gray:
            preds.append(np.zeros_like(ab_true) if given is None
                         else given[:, :2] * lab.AB_SCALE)
        for key, ab_pred in zip(scores, preds, strict=True):
            scores[key].add_batch(L, ab_true, ab_pred, weight)
    return scores
