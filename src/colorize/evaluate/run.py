"""The `evaluate` stage: metrics on the validation split for the model and the gray baseline.

Writes metrics/evaluate.json ({"model": {...}, "gray": {...}}, read by `dvc metrics show`),
plots/samples.png (gray | prediction | ground truth) and plots/ab_error_cmf.csv (the curve behind
AuC), then logs them, the model and its registry alias to the run the train stage opened.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature
from tqdm import tqdm

from colorize import imaging, lab
from colorize.config import Settings
from colorize.evaluate import metrics as M
from colorize.imaging import sample_grid, save_png
from colorize.model.checkpoint import load_model
from colorize.model.network import predict_ab
from colorize.preprocess.store import LabStore
from colorize.track import mlflow_run

METRICS = ("mse_ab", "psnr", "ssim", "ciede2000", "auc", "colourfulness_ratio")


def image_metrics(L: np.ndarray, ab_true: np.ndarray, ab_pred: np.ndarray) -> dict[str, float]:
    """All metrics for one image; L (H, W), ab (2, H, W)."""
    lab_true, lab_pred = lab.join_l_ab(L, ab_true), lab.join_l_ab(L, ab_pred)
    rgb_true, rgb_pred = lab.lab_to_rgb8(lab_true), lab.lab_to_rgb8(lab_pred)
    c_true = M.colourfulness(rgb_true)
    return {
        "mse_ab": M.mse_ab(lab_true, lab_pred),
        "psnr": M.psnr(rgb_true, rgb_pred),
        "ssim": M.ssim(rgb_true, rgb_pred),
        "ciede2000": M.ciede2000(lab_true, lab_pred),
        "auc": M.auc(lab_true, lab_pred),
        "colourfulness": imaging.colourfulness(rgb_pred),
        "colourfulness_true": c_true,
    }


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("mse_ab", "psnr", "ssim",
                                                              "ciede2000", "auc")}
    # Ratio of means: how colourful predictions are relative to the truth (1.0 = as colourful).
    truth = np.mean([r["colourfulness_true"] for r in rows])
    out["colourfulness_ratio"] = float(np.mean([r["colourfulness"] for r in rows]) / truth)
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(settings: Settings, model_path: str | Path = "models/model.pt",
             data_dir: str | Path = "data/processed") -> dict:
    model, size = load_model(model_path)
    store = LabStore(Path(data_dir) / "val")
    per = {"model": [], "gray": []}
    cmf = {"model": [], "gray": []}
    bs = settings.evaluate.batch_size
    for start in tqdm(range(0, len(store), bs), desc="evaluate", unit="batch"):
        labs = np.stack([np.asarray(store[i], np.float32)
                         for i in range(start, min(start + bs, len(store)))])
        L, ab_true = labs[:, 0], labs[:, 1:]
        preds = {"model": predict_ab(model, L, bs), "gray": np.zeros_like(ab_true)}
        for name, ab_pred in preds.items():
            for i in range(len(L)):
                per[name].append(image_metrics(L[i], ab_true[i], ab_pred[i]))
                cmf[name].append(M.ab_error_cmf(lab.join_l_ab(L[i], ab_true[i]),
                                                lab.join_l_ab(L[i], ab_pred[i])))
    results = {name: summarize(rows) for name, rows in per.items()}
    results["val_images"] = len(store)
    _write(results, cmf, store, model, settings.evaluate.grid_images)
    print(json.dumps(results, indent=2))
    return results


def _write(results, cmf, store, model, n_grid) -> None:
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/evaluate.json").write_text(json.dumps(results, indent=2) + "\n")
    Path("plots").mkdir(exist_ok=True)
    with open("plots/ab_error_cmf.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["threshold", "model", "gray"])
        m, g = np.mean(cmf["model"], axis=0), np.mean(cmf["gray"], axis=0)
        for t, a, b in zip(M.AUC_THRESHOLDS, m, g, strict=True):
            w.writerow([int(t), f"{a:.5f}", f"{b:.5f}"])
    labs = np.stack([np.asarray(store[i], np.float32) for i in range(min(n_grid, len(store)))])
    grid = sample_grid(labs[:, 0], predict_ab(model, labs[:, 0]), labs[:, 1:])
    save_png(grid, "plots/samples.png")


def log_to_mlflow(settings: Settings, results: dict, model_path: str | Path = "models/model.pt"
                  ) -> str | None:
    """Add metrics, the final grid and the model to the pipeline's run; register the model and
    move the alias to this newest evaluated version. Returns the model version."""
    info = mlflow_run.read_run_file()
    mlflow_run.setup(settings.tracking.experiment)
    with mlflow.start_run(run_id=info["run_id"]):
        for name in ("model", "gray"):
            mlflow.log_metrics({f"eval_{name}_{k}": v for k, v in results[name].items()})
        mlflow.log_artifact("plots/samples.png", "samples")
        mlflow.log_artifact("plots/ab_error_cmf.csv", "evaluation")
        mlflow.log_artifact("metrics/evaluate.json", "evaluation")
        if not settings.tracking.log_model:
            return None
        model, size = load_model(model_path)
        example = np.zeros((2, 1, size, size), np.float32)  # batch > 1: a dynamic batch dim
        with torch.no_grad():
            signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
        # The network itself (torch flavor: tensors in, tensors out) ...
        mlflow.pytorch.log_model(model, name="model", input_example=example,
                                 signature=signature, pip_requirements=_requirements(),
                                 metadata={"working_size": size})
        # ... and the registered model: image files in, colorized images out (pyfunc).
        logged = _log_service(settings, model_path)
    version = str(logged.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(settings.tracking.registered_model,
                                      settings.tracking.alias, version)
    print(f"registered {settings.tracking.registered_model} version {version} "
          f"as @{settings.tracking.alias} (run {info['run_id']})")
    return version


def _log_service(settings: Settings, model_path: str | Path):
    from colorize.imaging import encode_png
    from colorize.predict.service import ColorizerService, image_frame

    sample = lab.lab_to_rgb8(np.dstack([np.linspace(20, 80, 64 * 48).reshape(48, 64),
                                        np.zeros((48, 64, 2))]))
    request = image_frame([encode_png(sample)])
    # The service's own answer to the example request gives the output schema.
    service = ColorizerService()
    service.model, service.size = load_model(model_path)
    signature = infer_signature(request, service.predict(None, request))
    return mlflow.pyfunc.log_model(
        name="colorizer", python_model=ColorizerService(),
        artifacts={"checkpoint": str(model_path)}, input_example=request, signature=signature,
        registered_model_name=settings.tracking.registered_model,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "torchvision", "numpy",
                                           "opencv-python-headless", "mlflow")]
