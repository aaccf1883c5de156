"""MLflow: where runs go, and the one run that spans a pipeline execution.

The train stage opens the run and writes its id to models/run.json (a DVC output, so dvc.lock
links every result to its run); the evaluate stage reopens that run to add metrics and the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import mlflow

RUN_FILE = "models/run.json"


def project_root() -> Path:
    """The repository root: DVC_ROOT when DVC runs us (so queued `dvc exp run` jobs in temporary
    copies log to the same store), else the nearest folder with dvc.yaml, else the cwd."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def setup(experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if tracking_uri().startswith("sqlite:"):  # keep artifacts inside the repository
            location = (project_root() / "mlartifacts").as_uri()
        exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path.cwd(),
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_tags(manifest: str | Path) -> dict[str, str]:
    return {
        "git_commit": git_commit(),
        # DVC sets DVC_EXP_NAME for `dvc exp run`; a plain `dvc repro` has none.
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
        "data_manifest_sha256": file_hash(manifest) if Path(manifest).exists() else "missing",
    }


def write_run_file(run_id: str, experiment_id: str, path: str | Path = RUN_FILE) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    info = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": tracking_uri()}
    Path(path).write_text(json.dumps(info, indent=2) + "\n")


def read_run_file(path: str | Path = RUN_FILE) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no run id (run the train stage first)")
    return json.loads(p.read_text())

