"""The `train` stage: fit the model, log curves and per-epoch sample grids to one MLflow run.

Outputs (paths given by the caller; dvc.yaml's layout in parentheses):
  model       (models/model.pt)           best weights, loaded with weights_only=True
  run file    (models/run.json)           the MLflow run id; DVC-tracked, in git
  metrics     (metrics/train.json)        best epoch and validation loss, epochs, resume point
  history     (plots/train_history.csv)   loss per epoch, for `dvc plots`
Checkpoints live in <checkpoints>/<key>/, where <key> fingerprints the settings and data;
train/checkpoint.py decides what is resumed (same settings, data and code) and keeps the rest.
A resumed training continues its own MLflow run. Under torchrun every rank trains; rank 0
alone writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow

from colorize import code
from colorize.config import Settings
from colorize.files import write_csv, write_json
from colorize.imaging import sample_grid
from colorize.model import bins
from colorize.model.file import save_model
from colorize.model.inference import predict_ab
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore
from colorize.track import mlflow_run
from colorize.train import dist
from colorize.train.checkpoint import Checkpoints
from colorize.train.loop import Epoch, fit

# Settings that change how fast a run goes, not what it computes: a run may resume under others.
NOT_FINGERPRINTED = {"train.nproc", "train.num_workers", "train.compile", "train.device"}


def fingerprint(settings: Settings, data_dir: Path) -> str:
    parts = {k: v for k, v in settings.flat().items()
             if (k.split(".")[0] in ("model", "train") or k == "data.labels")
             and k not in NOT_FINGERPRINTED}
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for split in ("train", "val"):
        h.update((data_dir / split / "index.json").read_bytes())
    return h.hexdigest()[:16]


def code_fingerprint() -> str:
    """The code this stage runs (what dvc.yaml lists as its code deps)."""
    return code.fingerprint([__name__])


def train(settings: Settings, *, data_dir: str | Path, prior_path: str | Path,
          manifest: str | Path, model_path: str | Path, run_file: str | Path,
          metrics_path: str | Path, history_path: str | Path,
          checkpoints: str | Path) -> dict | None:
    """Train and write the outputs; returns the summary (None on ranks other than 0)."""
    data_dir = Path(data_dir)
    prior = bins.load_prior(prior_path)
    with dist.session(settings.train.device) as ctx:
        ckpts = Checkpoints(Path(checkpoints) / fingerprint(settings, data_dir),
                            code_fingerprint(), settings.train.epochs,
                            log=print if ctx.is_main else lambda _: None)
        ckpts.open()
        if not ctx.is_main:
            fit(settings, data_dir, ckpts, prior, log=lambda _: None)
            return None
        return _train_main(settings, data_dir, prior, prior_path, manifest, model_path,
                           run_file, metrics_path, history_path, ckpts)


def _train_main(settings, data_dir, prior, prior_path, manifest, model_path, run_file,
                metrics_path, history_path, ckpts: Checkpoints) -> dict:
    experiment_id = mlflow_run.setup(settings.tracking.experiment)
    store = LabStore(data_dir / "val")
    grid = store.batch(0, min(settings.evaluate.grid_images, len(store)))
    decoding = settings.evaluate.decoding

    def on_epoch(e: Epoch, model: Colorizer) -> None:
        curves = {"train_loss": e.train_loss, "val_loss": e.val_loss, "lr": e.lr}
        if settings.train.scene_loss:
            curves["scene_loss"] = e.scene_loss
        # The loss curves first on MLflow's run page, throughput in its system section, last.
        mlflow.log_metrics({**{mlflow_run.CURVES + k: v for k, v in curves.items()},
                            "system/epoch_seconds": e.seconds,
                            "system/train_images_per_s": e.images_per_s}, step=e.epoch)
        pred = predict_ab(model, grid[:, 0], [decoding])[0]
        mlflow.log_image(sample_grid(grid[:, 0], pred, grid[:, 1:]),
                         f"samples/epoch_{e.epoch:03d}.png")

    # After a crash, the resumed training continues the same MLflow run.
    name = mlflow_run.run_name(ckpts.folder.name)
    with mlflow.start_run(run_id=ckpts.run_id, run_name=name) as active:
        if ckpts.run_id is None:
            mlflow.log_params({k: v for k, v in settings.flat().items()
                               if not k.startswith("sweep.")})
            mlflow.set_tags(mlflow_run.run_tags(manifest))
            mlflow_run.log_datasets(manifest)
            if Path(prior_path).with_suffix(".png").exists():
                mlflow.log_artifact(str(Path(prior_path).with_suffix(".png")), "data")
            ckpts.run_id = active.info.run_id
        try:
            result = fit(settings, data_dir, ckpts, prior, on_epoch=on_epoch)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP (cli.py): not a failure
            mlflow.end_run("KILLED")
            raise
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
