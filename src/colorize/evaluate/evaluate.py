"""The `evaluate` stage: metrics for the model and the gray baseline on the test split (the
headline) and the validation split. It measures, nothing else (MLflow logging and registration
belong to colorize.track).

Choosing on validation, reporting on test: the trade-off over decodings is scored on the
validation split only (that is where decodings are chosen); the test split is scored at the
operating point alone, so no choice can be made on it. Without a test split
(data.test_fraction 0) the headline is the validation split's, and says so.

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  metrics   (metrics/evaluate.json)    the headline, what `dvc metrics show` prints in 120
                                       columns: {"split", "photos", "ciede2000",
                                       "ciede2000_gray", "auc", "auc_gray", "colourfulness"}
                                       (colourfulness: the ratio to the truth's)
  detail    (metrics/evaluate_detail.json)  every metric of both splits: {"test": {"images",
                                       "model", "gray"}, "val": {...}, "headline": "test" |
                                       "val", "head", decoding}; the classification head at
                                       its operating point (evaluate.temperature,
                                       evaluate.prior_correction)
  tradeoff  (plots/tradeoff.csv)       validation split: one row per (temperature, prior
                                       correction) scored, or the regression model, and gray
  samples   (plots/samples.png)        validation photos: gray input | prediction(s) | truth
  curve     (plots/ab_error_cmf.csv)   the headline split's cumulative ab-error curve behind
                                       AuC, model vs gray
  hints     (plots/hints.csv)          validation split, CIEDE2000 and PSNR with 0, 1, 2, 5, 10
                                       colour hints simulated from the truth: the model (a
                                       network without hint channels ignores them: its 0-hint
                                       scores on every row) beside gray with the hints painted
                                       in; the 0 row is the operating point's above
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from colorize import imaging
from colorize.config import Settings
from colorize.decoding import NEUTRAL, Decoding
from colorize.evaluate import metrics as M
from colorize.evaluate.score import GRAY, HEADLINE, score
from colorize.files import write_csv, write_json
from colorize.model import bins
from colorize.model.file import load_model
from colorize.model.inference import predict_ab
from colorize.model.network import Colorizer
from colorize.preprocess.store import INDEX, LabStore

HINT_COUNTS = (0, 1, 2, 5, 10)


def decodings(settings: Settings, model: Colorizer) -> list[Decoding]:
    """What is scored: the operating point first, then every evaluate.temperature at the
    operating prior correction, and (when it is not 0) at 0, as trained: the trade-off."""
    if model.config.head == "regression":
        return [NEUTRAL]
    point = settings.evaluate.decoding
    temperatures = dict.fromkeys((point.temperature, *settings.evaluate.temperatures))
    grid = [Decoding(t, a) for a in dict.fromkeys((point.prior_correction, 0.0))
            for t in temperatures]
    return list(dict.fromkeys([point, *grid]))


def label(model: Colorizer, d: Decoding) -> str:
    return "regression" if model.config.head == "regression" else d.label()


def evaluate(settings: Settings, *, model_path: str | Path, data_dir: str | Path,
             prior_path: str | Path, metrics_path: str | Path, detail_path: str | Path,
             tradeoff_path: str | Path, samples_path: str | Path, curve_path: str | Path,
             hints_path: str | Path) -> dict:
    model, size, _ = load_model(model_path, device="auto")
    prior = bins.load_prior(prior_path)
    stores = {"val": LabStore(Path(data_dir) / "val")}
    if (Path(data_dir) / "test" / INDEX).exists():
        stores["test"] = LabStore(Path(data_dir) / "test")
    stores = {split: s for split, s in stores.items() if len(s) or split == "val"}
    decoded = decodings(settings, model)
    point = decoded[0]
    scores = {split: score(model, s, prior, decoded if split == "val" else [point],
                           settings.evaluate.batch_size) for split, s in stores.items()}
    headline = "test" if "test" in scores else "val"
    cls = model.config.head == "classification"
    results: dict = {"headline": headline, "head": model.config.head,
                     "hints": model.config.hints}
    if cls:
        results.update(point.params())
    for split in ("test", "val"):
        results[split] = ({"images": len(stores[split]),
                           "model": scores[split][point].summary(),
                           "gray": scores[split][GRAY].summary()}
                          if split in scores else None)
    val = scores["val"]
    rows = [["gray", "", "", *val[GRAY].summary().values()]]
    for d in sorted(decoded, key=lambda d: (-d.prior_correction, -d.temperature)):
        rows.append([label(model, d), d.temperature if cls else "",
                     d.prior_correction if cls else "", *val[d].summary().values()])
    write_json(metrics_path, headline_metrics(results))
    write_json(detail_path, results)
    write_csv(tradeoff_path, ["predictor", "temperature", "prior_correction", *HEADLINE], rows)
    best = scores[headline]
    write_csv(curve_path, ["threshold", "model", "gray"],
              [[int(t), f"{a:.5f}", f"{b:.5f}"] for t, a, b in
               zip(M.AUC_THRESHOLDS, best[point].curve.cmf(), best[GRAY].curve.cmf(),
                   strict=True)])
    write_csv(hints_path, ["hints", "model_ciede2000", "gray_ciede2000", "model_psnr",
                           "gray_psnr"],
              _hint_rows(model, stores["val"], prior, point, val, settings.evaluate.batch_size))
    imaging.save_png(_grid(model, stores["val"], settings, decoded), samples_path)
    print(json.dumps(results, indent=2))
    return results


def headline_metrics(results: dict) -> dict:
    """The few numbers that answer "is it better than gray?", flat and short-named so that
    `dvc metrics show` fits a 120-column terminal with each model column beside gray's."""
    split = results["headline"]
    m, g = results[split]["model"], results[split]["gray"]
    return {"split": split, "photos": results[split]["images"],
            "ciede2000": m["ciede2000"], "ciede2000_gray": g["ciede2000"],
            "auc": m["auc"], "auc_gray": g["auc"], "colourfulness": m["colourfulness_ratio"]}


def _hint_rows(model: Colorizer, store: LabStore, prior: np.ndarray, point: Decoding,
               plain: dict, batch_size: int) -> list[list]:
    """CIEDE2000 and PSNR with each of HINT_COUNTS simulated hints: the model at the operating
    point and gray with the hints painted in. 0 hints: `plain`. A network without hint
    channels is not run again: its output does not depend on them."""
    rows = []
    for k in HINT_COUNTS:
        scores = plain if k == 0 else score(
            model, store, prior, [point] if model.config.hints else [], batch_size,
            wanted=("ciede2000", "psnr"), hint_count=k)
        m = scores.get(point, plain[point]).summary()
        g = scores[GRAY].summary()
        rows.append([k, m["ciede2000"], g["ciede2000"], m["psnr"], g["psnr"]])
    return rows


def _grid(model: Colorizer, store: LabStore, settings: Settings, decoded: list[Decoding]
          ) -> np.ndarray:
    """Gray | the model at each evaluate.temperature (operating prior correction) | truth."""
    labs = store.batch(0, min(settings.evaluate.grid_images, len(store)))
    shown = sorted((d for d in decoded if d.prior_correction == decoded[0].prior_correction),
                   key=lambda d: -d.temperature)
    preds = predict_ab(model, labs[:, 0], shown, batch_size=len(labs))
    labels = [label(model, d) for d in shown]
    return imaging.sample_grid(labs[:, 0], preds, labs[:, 1:],
                               labels=(imaging.GRID_LABELS[0], *labels, imaging.GRID_LABELS[2]))
