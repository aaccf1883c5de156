"""The `evaluate` stage: metrics on the validation split for the model and the gray baseline.
It measures, nothing else (MLflow logging and registration belong to colorize.track).

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  metrics   (metrics/evaluate.json)    {"model": {...}, "gray": {...}, ...} for `dvc metrics`;
                                       the model at evaluate.temperature for the classification head
  tradeoff  (plots/tradeoff.csv)       one row per temperature (classification) or the model,
                                       and gray: colourfulness against CIEDE2000, AuC, ...
  samples   (plots/samples.png)        gray input | prediction(s) | ground truth, labelled
  curve     (plots/ab_error_cmf.csv)   cumulative ab-error curve behind AuC, model vs gray
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from colorize import imaging, lab
from colorize.config import Settings
from colorize.evaluate import metrics as M
from colorize.files import write_csv, write_json
from colorize.model import bins
from colorize.model.checkpoint import load_model
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore

HEADLINE = ("ciede2000", "auc", "auc_rebalanced", "psnr", "ssim", "mse_ab",
            "colourfulness_ratio")


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
            row.update(psnr=M.psnr(rgb_true, rgb_pred), ssim=M.ssim(rgb_true, rgb_pred),
                       colourfulness=imaging.colourfulness(rgb_pred),
                       colourfulness_true=imaging.colourfulness(rgb_true))
        self.rows.append(row)

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


def temperatures(settings: Settings, model: Colorizer) -> list[float]:
    """The temperatures scored: the operating point first, then the trade-off's others."""
    if model.head == "regression":
        return [1.0]
    T = settings.evaluate.temperature
    return [T, *(t for t in settings.evaluate.temperatures if t != T)]


@torch.no_grad()
def predictions(model: Colorizer, L: np.ndarray, temps: list[float]) -> list[np.ndarray]:
    """ab (N, 2, H, W) at each temperature from one forward pass (fp32)."""
    x = lab.normalize_l(torch.from_numpy(L)[:, None])
    out = model(x)
    return [lab.denormalize_ab(model.decode(out, t)).numpy() for t in temps]


def score(model: Colorizer, store: LabStore, prior: np.ndarray, temps: list[float],
          batch_size: int = 16, wanted: tuple[str, ...] = HEADLINE, gray: bool = True,
          progress: bool = True) -> dict[float | str, Scores]:
    """Scores of the model at each temperature (and of gray) over the validation store."""
    inverse_prior = 1.0 / np.maximum(prior, 1e-12)
    scores: dict[float | str, Scores] = {t: Scores(wanted) for t in temps}
    if gray:
        scores["gray"] = Scores(wanted)
    for start in tqdm(range(0, len(store), batch_size), desc="evaluate", unit="batch",
                      disable=not progress):
        labs = np.stack([np.asarray(store[i], np.float32)
                         for i in range(start, min(start + batch_size, len(store)))])
        L, ab_true = labs[:, 0], labs[:, 1:]
        weight = inverse_prior[bins.nearest_bin(ab_true.transpose(0, 2, 3, 1))]
        preds = predictions(model, L, temps) + ([np.zeros_like(ab_true)] if gray else [])
        for key, ab_pred in zip(scores, preds, strict=True):
            for i in range(len(L)):
                scores[key].add(L[i], ab_true[i], ab_pred[i], weight[i])
    return scores


def evaluate(settings: Settings, *, model_path: str | Path, data_dir: str | Path,
             prior_path: str | Path, metrics_path: str | Path, tradeoff_path: str | Path,
             samples_path: str | Path, curve_path: str | Path) -> dict:
    model, size, _ = load_model(model_path)
    store = LabStore(Path(data_dir) / "val")
    temps = temperatures(settings, model)
    scores = score(model, store, bins.load_prior(prior_path), temps, settings.evaluate.batch_size)
    gray = scores["gray"]
    results = {"model": scores[temps[0]].summary(), "gray": gray.summary(),
               "head": model.head, "val_images": len(store)}
    if model.head == "classification":
        results["temperature"] = temps[0]
    rows = [["gray", "", *results["gray"].values()]]
    for t in sorted(temps, reverse=True):
        label = f"T={t:g}" if model.head == "classification" else model.head
        rows.append([label, t if model.head == "classification" else "",
                     *scores[t].summary().values()])
    write_json(metrics_path, results)
    write_csv(tradeoff_path, ["predictor", "temperature", *HEADLINE], rows)
    write_csv(curve_path, ["threshold", "model", "gray"],
              [[int(t), f"{a:.5f}", f"{b:.5f}"] for t, a, b in
               zip(M.AUC_THRESHOLDS, scores[temps[0]].curve.cmf(), gray.curve.cmf(),
                   strict=True)])
    imaging.save_png(_grid(model, store, settings.evaluate.grid_images, temps), samples_path)
    print(json.dumps(results, indent=2))
    return results


def _grid(model: Colorizer, store: LabStore, n: int, temps: list[float]) -> np.ndarray:
    labs = np.stack([np.asarray(store[i], np.float32) for i in range(min(n, len(store)))])
    shown = sorted(temps, reverse=True)
    preds = predictions(model, labs[:, 0], shown)
    labels = [f"T = {t:g}" for t in shown] if model.head == "classification" else ["prediction"]
    return imaging.sample_grid(labs[:, 0], preds, labs[:, 1:],
                               labels=(imaging.GRID_LABELS[0], *labels, imaging.GRID_LABELS[2]))
