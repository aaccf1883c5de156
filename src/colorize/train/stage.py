"""The `train` stage: fit the model, log curves and per-epoch sample grids to one MLflow run.

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  model       (models/model.pt)           best weights, loaded with weights_only=True
  run file    (models/run.json)           the MLflow run id; DVC-tracked, in git
  metrics     (metrics/train.json)        best epoch and validation loss, epochs, resume point
  history     (plots/train_history.csv)   loss per epoch, for `dvc plots`
Checkpoints live in <checkpoints>/<key>/, where <key> fingerprints the settings and data, so only
a matching run is ever resumed. Under torchrun every rank trains; rank 0 alone writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np

from colorize.config import Settings
from colorize.files import write_csv, write_json
from colorize.imaging import sample_grid
from colorize.model import bins
from colorize.model.checkpoint import read_state, save_model
from colorize.model.network import Colorizer, predict_ab
from colorize.preprocess.store import LabStore
from colorize.track import mlflow_run
from colorize.train import dist
from colorize.train.loop import Epoch, fit

# Settings that change how fast a run goes, not what it computes: a run may resume under others.
NOT_FINGERPRINTED = {"train.nproc", "train.num_workers", "train.compile", "train.device"}


def fingerprint(settings: Settings, data_dir: Path) -> str:
    parts = {k: v for k, v in settings.flat().items()
             if k.split(".")[0] in ("model", "train") and k not in NOT_FINGERPRINTED}
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for split in ("train", "val"):
        h.update((data_dir / split / "index.json").read_bytes())
    return h.hexdigest()[:16]


def grid_batch(data_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n validation images: L (n, S, S) and ab (n, 2, S, S), float32."""
    store = LabStore(data_dir / "val")
    lab = np.stack([np.asarray(store[i], np.float32) for i in range(min(n, len(store)))])
    return lab[:, 0], lab[:, 1:]


def run(settings: Settings, *, data_dir: str | Path, prior_path: str | Path,
        manifest: str | Path, model_path: str | Path, run_file: str | Path,
        metrics_path: str | Path, history_path: str | Path,
        checkpoints: str | Path) -> dict | None:
    """Train and write the outputs; returns the summary (None on ranks other than 0)."""
    data_dir = Path(data_dir)
    prior = bins.load_prior(prior_path)
    with dist.session(settings.train.device) as ctx:
        ckpt_dir = Path(checkpoints) / fingerprint(settings, data_dir)
        if not ctx.is_main:
            fit(settings, data_dir, ckpt_dir, prior, log=lambda _: None)
            return None
        return _run_main(settings, data_dir, prior, prior_path, manifest, model_path, run_file,
                         metrics_path, history_path, ckpt_dir)


def _run_main(settings, data_dir, prior, prior_path, manifest, model_path, run_file,
              metrics_path, history_path, ckpt_dir) -> dict:
    experiment_id = mlflow_run.setup(settings.tracking.experiment)
    # After a crash, the resumed training continues the same MLflow run.
    run_id = _unfinished_run_id(ckpt_dir, settings.train.epochs)
    L_grid, ab_grid = grid_batch(data_dir, settings.evaluate.grid_images)
    T, alpha = settings.evaluate.temperature, settings.evaluate.prior_correction

    def on_epoch(e: Epoch, model: Colorizer) -> None:
        mlflow.log_metrics({"train_loss": e.train_loss, "val_loss": e.val_loss, "lr": e.lr,
                            "epoch_seconds": e.seconds, "train_images_per_s": e.images_per_s},
                           step=e.epoch)
        pred = predict_ab(model, L_grid, temperature=T, correction=alpha)
        mlflow.log_image(sample_grid(L_grid, pred, ab_grid), f"samples/epoch_{e.epoch:03d}.png")

    with mlflow.start_run(run_id=run_id, run_name=mlflow_run.run_name()) as active:
        if run_id is None:
            mlflow.log_params({k: v for k, v in settings.flat().items()
                               if not k.startswith("sweep.")})
            mlflow.set_tags(mlflow_run.run_tags(manifest))
            mlflow_run.log_datasets(manifest)
            if Path(prior_path).with_suffix(".png").exists():
                mlflow.log_artifact(str(Path(prior_path).with_suffix(".png")), "data")
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / "mlflow_run_id").write_text(active.info.run_id)
        result = fit(settings, data_dir, ckpt_dir, prior, on_epoch=on_epoch)
        save_model(result.model, model_path, settings.preprocess.size,
                   meta={"best_epoch": result.best_epoch, "run_id": active.info.run_id,
                         "experiment": mlflow_run.experiment_name()})
        mlflow.log_metrics({"best_val_loss": result.best_val_loss,
                            "best_epoch": result.best_epoch})
        mlflow_run.write_run_file(active.info.run_id, experiment_id, run_file)
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_loss": round(result.best_val_loss, 6),
        "epochs": len(result.history),
        "resumed_from_epoch": result.resumed_from,
    }
    write_json(metrics_path, summary)
    write_csv(history_path, ["epoch", "train_loss", "val_loss"],
              [[e.epoch, f"{e.train_loss:.6f}", f"{e.val_loss:.6f}"] for e in result.history])
    return summary


def _unfinished_run_id(ckpt_dir: Path, epochs: int) -> str | None:
    marker, last = ckpt_dir / "mlflow_run_id", ckpt_dir / "last.pt"
    if not (last.exists() and marker.exists()):
        return None
    done = len(read_state(last)["history"])
    return marker.read_text().strip() or None if done < epochs else None
