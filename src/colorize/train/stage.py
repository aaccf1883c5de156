"""The `train` stage: fit the model, log curves and per-epoch sample grids to one MLflow run.

Writes models/model.pt (best weights), models/run.json (the MLflow run id, DVC-tracked),
metrics/train.json and plots/train_history.csv. Checkpoints live in models/checkpoints/<key>/,
where <key> fingerprints the settings and data, so only a matching run is ever resumed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import torch

from colorize.config import Settings
from colorize.imaging import sample_grid
from colorize.model.checkpoint import save_model
from colorize.model.network import Colorizer, predict_ab
from colorize.preprocess.store import LabStore
from colorize.track import mlflow_run
from colorize.train.loop import Epoch, fit


def fingerprint(settings: Settings, data_dir: Path) -> str:
    parts = {k: v for k, v in settings.flat().items() if k.split(".")[0] in ("model", "train")}
    index = [(data_dir / s / "index.json").read_bytes() for s in ("train", "val")]
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for blob in index:
        h.update(blob)
    return h.hexdigest()[:16]


def grid_batch(data_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n validation images: L (n, S, S) and ab (n, 2, S, S), float32."""
    store = LabStore(data_dir / "val")
    lab = np.stack([np.asarray(store[i], np.float32) for i in range(min(n, len(store)))])
    return lab[:, 0], lab[:, 1:]


def run(settings: Settings, data_dir: str | Path = "data/processed",
        manifest: str | Path = "data/interim/manifest.csv", model_path: str = "models/model.pt",
        checkpoints: str = "models/checkpoints") -> dict:
    data_dir = Path(data_dir)
    ckpt_dir = Path(checkpoints) / fingerprint(settings, data_dir)
    experiment_id = mlflow_run.setup(settings.tracking.experiment)
    # After a crash, the resumed training continues the same MLflow run.
    run_id = _unfinished_run_id(ckpt_dir, settings.train.epochs)
    L_grid, ab_grid = grid_batch(data_dir, settings.evaluate.grid_images)

    def on_epoch(e: Epoch, model: Colorizer) -> None:
        mlflow.log_metrics({"train_loss": e.train_loss, "val_loss": e.val_loss,
                            "epoch_seconds": e.seconds, "train_images_per_s": e.images_per_s},
                           step=e.epoch)
        pred = predict_ab(model, L_grid)
        mlflow.log_image(sample_grid(L_grid, pred, ab_grid),
                         f"samples/epoch_{e.epoch:03d}.png")

    with mlflow.start_run(run_id=run_id) as active:
        if run_id is None:
            mlflow.log_params({k: v for k, v in settings.flat().items()
                               if not k.startswith("sweep.")})
            mlflow.set_tags(mlflow_run.run_tags(manifest))
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / "mlflow_run_id").write_text(active.info.run_id)
        result = fit(settings, data_dir, ckpt_dir, on_epoch=on_epoch)
        save_model(result.model, model_path, settings.preprocess.size,
                   meta={"best_epoch": result.best_epoch, "run_id": active.info.run_id})
        mlflow.log_metrics({"best_val_loss": result.best_val_loss,
                            "best_epoch": result.best_epoch})
        mlflow_run.write_run_file(active.info.run_id, experiment_id)
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs": len(result.history),
        "resumed_from_epoch": result.resumed_from,
        "train_images_per_s": round(float(np.median([e.images_per_s for e in result.history])), 1),
        "threads": torch.get_num_threads(),
    }
    _write_outputs(result.history, summary)
    return summary


def _unfinished_run_id(ckpt_dir: Path, epochs: int) -> str | None:
    marker, last = ckpt_dir / "mlflow_run_id", ckpt_dir / "last.pt"
    if not (last.exists() and marker.exists()):
        return None
    done = len(torch.load(last, map_location="cpu", weights_only=False)["history"])
    return marker.read_text().strip() or None if done < epochs else None


def _write_outputs(history: list[Epoch], summary: dict) -> None:
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/train.json").write_text(json.dumps(summary, indent=2) + "\n")
    Path("plots").mkdir(exist_ok=True)
    with open("plots/train_history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "val_loss"])
        for e in history:
            w.writerow([e.epoch, f"{e.train_loss:.6f}", f"{e.val_loss:.6f}"])
