"""The `evaluate` stage: metrics on the validation split for the model and the gray baseline.
It measures, nothing else (MLflow logging and registration belong to colorize.track).

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  metrics   (metrics/evaluate.json)    {"model": {...}, "gray": {...}, ...} for `dvc metrics`;
                                       the classification head at its operating point
                                       (evaluate.temperature, evaluate.prior_correction)
  tradeoff  (plots/tradeoff.csv)       one row per (temperature, prior correction) scored, or the
                                       regression model, and gray: colourfulness vs CIEDE2000...
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


Decoding = tuple[float, float]  # (temperature, prior correction)


def decodings(settings: Settings, model: Colorizer) -> list[Decoding]:
    """What is scored: the operating point first, then every evaluate.temperature at the
    operating prior correction, and (when it is not 0) at 0, as trained: the trade-off."""
    if model.head == "regression":
        return [(1.0, 0.0)]
    T, alpha = settings.evaluate.temperature, settings.evaluate.prior_correction
    grid = [(t, a) for a in dict.fromkeys((alpha, 0.0))
            for t in dict.fromkeys((T, *settings.evaluate.temperatures))]
    return list(dict.fromkeys(grid))


def label(model: Colorizer, d: Decoding) -> str:
    return model.head if model.head == "regression" else f"T={d[0]:g} A={d[1]:g}"


@torch.no_grad()
def predictions(model: Colorizer, L: np.ndarray, decoded: list[Decoding]) -> list[np.ndarray]:
    """ab (N, 2, H, W) for each (temperature, prior correction) from one forward pass (fp32)."""
    model.eval()
    out = model(lab.normalize_l(torch.from_numpy(L)[:, None]))
    return [lab.denormalize_ab(model.decode(out, t, a)).numpy() for t, a in decoded]


def score(model: Colorizer, store: LabStore, prior: np.ndarray, decoded: list[Decoding],
          batch_size: int = 16, wanted: tuple[str, ...] = HEADLINE, gray: bool = True,
          progress: bool = True) -> dict[Decoding | str, Scores]:
    """Scores of the model at each decoding (and of gray) over the validation store."""
    inverse_prior = 1.0 / np.maximum(prior, 1e-12)
    scores: dict[Decoding | str, Scores] = {d: Scores(wanted) for d in decoded}
    if gray:
        scores["gray"] = Scores(wanted)
    for start in tqdm(range(0, len(store), batch_size), desc="evaluate", unit="batch",
                      disable=not progress):
        labs = np.stack([np.asarray(store[i], np.float32)
                         for i in range(start, min(start + batch_size, len(store)))])
        L, ab_true = labs[:, 0], labs[:, 1:]
        weight = inverse_prior[bins.nearest_bin(ab_true.transpose(0, 2, 3, 1))]
        preds = predictions(model, L, decoded) + ([np.zeros_like(ab_true)] if gray else [])
        for key, ab_pred in zip(scores, preds, strict=True):
            for i in range(len(L)):
                scores[key].add(L[i], ab_true[i], ab_pred[i], weight[i])
    return scores


def evaluate(settings: Settings, *, model_path: str | Path, data_dir: str | Path,
             prior_path: str | Path, metrics_path: str | Path, tradeoff_path: str | Path,
             samples_path: str | Path, curve_path: str | Path) -> dict:
    model, size, _ = load_model(model_path)
    store = LabStore(Path(data_dir) / "val")
    decoded = decodings(settings, model)
    scores = score(model, store, bins.load_prior(prior_path), decoded,
                   settings.evaluate.batch_size)
    gray = scores["gray"]
    results = {"model": scores[decoded[0]].summary(), "gray": gray.summary(),
               "head": model.head, "val_images": len(store)}
    if model.head == "classification":
        results["temperature"], results["prior_correction"] = decoded[0]
    cls = model.head == "classification"
    rows = [["gray", "", "", *results["gray"].values()]]
    for d in sorted(decoded, key=lambda d: (-d[1], -d[0])):
        rows.append([label(model, d), d[0] if cls else "", d[1] if cls else "",
                     *scores[d].summary().values()])
    write_json(metrics_path, results)
    write_csv(tradeoff_path, ["predictor", "temperature", "prior_correction", *HEADLINE], rows)
    write_csv(curve_path, ["threshold", "model", "gray"],
              [[int(t), f"{a:.5f}", f"{b:.5f}"] for t, a, b in
               zip(M.AUC_THRESHOLDS, scores[decoded[0]].curve.cmf(), gray.curve.cmf(),
                   strict=True)])
    imaging.save_png(_grid(model, store, settings, decoded), samples_path)
    print(json.dumps(results, indent=2))
    return results


def _grid(model: Colorizer, store: LabStore, settings: Settings, decoded: list[Decoding]
          ) -> np.ndarray:
    """Gray | the model at each evaluate.temperature (operating prior correction) | truth."""
    n = settings.evaluate.grid_images
    labs = np.stack([np.asarray(store[i], np.float32) for i in range(min(n, len(store)))])
    shown = sorted((d for d in decoded if d[1] == decoded[0][1]), key=lambda d: -d[0])
    preds = predictions(model, labs[:, 0], shown)
    labels = [label(model, d) for d in shown]
    return imaging.sample_grid(labs[:, 0], preds, labs[:, 1:],
                               labels=(imaging.GRID_LABELS[0], *labels, imaging.GRID_LABELS[2]))
