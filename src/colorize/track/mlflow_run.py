"""MLflow: where runs go, and the one run that spans a pipeline execution.

The train stage opens the run (named after the DVC experiment, with the train/validation
manifests logged as MLflow datasets) and writes its id to models/run.json, a DVC output kept in
git, so dvc.lock links every result to its run; the evaluate stage reopens that run to add
metrics and the model. models/run.json holds no absolute path: the local store is always
<repository>/mlflow.db, found from wherever the command runs.

Queued `dvc exp run` jobs (`dvc queue start -j 2`) run side by side and share that store; MLflow
creates a missing store with migrations that fail when two processes run them at once (a fresh
clone's first two queued experiments did), so the store is created under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from filelock import FileLock
from mlflow.exceptions import MlflowException

from colorize.errors import UserError, shortened
from colorize.files import write_json
from colorize.paths import project_root
from colorize.track.store import ARTIFACTS, STORE, relocate

SETUP_LOCK = f".{STORE}.setup.lock"  # in the repository root, git-ignored (/.*.lock)
# MLflow 3's experiment kind: model development, not GenAI. (The 3.17 UI still opens on the
# overview tab; the README links the runs table directly.)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# The prefix of the per-epoch curves (training/train_loss, training/val_loss, training/lr): MLflow's
# run page draws a section per prefix before the unprefixed metrics (the evaluation's), and
# "system/" (time per epoch, throughput) last, so the loss curves come first.
CURVES = "training/"


def local_uri() -> str:
    return f"sqlite:///{project_root() / STORE}"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI (a server, for a team) or the repository's own SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


# MLflow's own defaults wait 120 s per request and retry 7 times (over 4 minutes for an
# unreachable server); a command waits seconds, unless the user set these.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")


def check_tracking_uri() -> None:
    """A one-line UserError, in seconds, for a tracking URI that cannot work: not a URI MLflow
    takes, a server that does not answer, a database without its driver."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in SCHEMES:
        raise UserError(f"MLFLOW_TRACKING_URI={_shown(uri)}: not a tracking URI (an MLflow server "
                        "http://HOST:PORT, or sqlite:////absolute/path/mlflow.db); unset it to "
                        "use the repository's own store")
    if scheme in ("http", "https"):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _reachable(uri)
    elif scheme in ("postgresql", "mysql", "mssql"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(uri)  # loads the driver, connects to nothing
            engine.dispose()
        except (ImportError, sqlalchemy.exc.ArgumentError) as e:
            raise UserError(f"MLFLOW_TRACKING_URI: {scheme} needs its database driver "
                            f"({e}); install it, or name an installed one in the URI "
                            "(e.g. postgresql+psycopg2://...)") from None
        # MLflow retries a database that does not answer for minutes, then shows a traceback.
        # (An mssql "host" may be an ODBC data source name: not probed.)
        if scheme in DATABASE_PORTS and engine.url.host:
            _listening(engine.url.host, engine.url.port or DATABASE_PORTS[scheme])


DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306}


def _listening(host: str, port: int, timeout: float = 5.0) -> None:
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"MLFLOW_TRACKING_URI: the database at {host}:{port} does not answer "
                        f"({e.strerror or e}); start it, or unset the variable to use the "
                        "repository's own store") from None


def _shown(uri: str) -> str:
    """The URI as a message shows it: without a password, and cut short."""
    import re

    uri = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", uri)
    return shortened(uri, 100)


def _reachable(url: str, timeout: float = 5.0) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answers: whatever it says about /health, it is there
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"MLFLOW_TRACKING_URI={_shown(url)}: the MLflow server does not answer "
                        f"({reason}); start it, or unset the variable to use the "
                        "repository's own store") from None


def is_local() -> bool:
    """The repository's own store (mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, so the
    variable alone does not tell)."""
    return tracking_uri() == local_uri()


def setup(experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    With the local store, the first access (which creates mlflow.db and its tables) and the
    experiment's creation happen under a file lock: concurrent queued experiments would otherwise
    race in MLflow's schema migrations or both create the experiment, and one would fail."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    check_tracking_uri()
    if not is_local():
        mlflow.set_tracking_uri(tracking_uri())
        return _experiment_id(experiment)
    root = project_root()
    with FileLock(str(root / SETUP_LOCK)):
        relocate(root)  # a moved or copied checkout: point the store at its new home
        mlflow.set_tracking_uri(tracking_uri())
        return _experiment_id(experiment)


def _experiment_id(experiment: str) -> str:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = (project_root() / ARTIFACTS).as_uri() if is_local() else None
        try:
            exp_id = mlflow.create_experiment(experiment, artifact_location=location,
                                              tags=EXPERIMENT_TAGS)
        except MlflowException as e:  # another machine created it first (a shared server)
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp_id = mlflow.get_experiment_by_name(experiment).experiment_id
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


def experiment_name() -> str:
    """DVC sets DVC_EXP_NAME for `dvc exp run`; a plain `dvc repro` runs in the workspace."""
    return os.environ.get("DVC_EXP_NAME", "workspace")


def run_name(training: str = "") -> str:
    """MLflow run name: the DVC experiment's name (unique), or for `dvc repro`
    workspace@<commit>.<training>, where `training` is the start of the training's settings+data
    fingerprint: two different trainings at one commit (params edited, not committed) are told
    apart, and a resumed training keeps its name."""
    name = experiment_name()
    if name != "workspace":
        return name
    return f"workspace@{git_commit()[:8]}" + (f".{training[:6]}" if training else "")


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_tags(manifest: str | Path) -> dict[str, str]:
    return {
        "git_commit": git_commit(),
        "dvc_experiment": experiment_name(),
        "data_manifest_sha256": file_hash(manifest) if Path(manifest).exists() else "missing",
    }


def log_datasets(manifest: str | Path) -> None:
    """The split manifest's train, validation and test rows as MLflow datasets of the active
    run, so the UI shows which photos a run saw, was checked on and is scored on (digests)."""
    rows = pd.read_csv(manifest)
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        part = rows[rows["split"] == split].reset_index(drop=True)
        if part.empty:
            continue
        with warnings.catch_warnings():  # source-kind and integer-column hints: not ours
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(part, source=str(manifest),
                                              name=f"photos-{split}")
            mlflow.log_input(dataset, context=context)


def write_run_file(run_id: str, experiment_id: str, path: str | Path) -> None:
    info = {"run_id": run_id, "experiment_id": experiment_id,
            "tracking": STORE if is_local() else tracking_uri()}
    write_json(path, info)


def read_run_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no MLflow run id (run the train stage first: dvc repro train)")
    return json.loads(p.read_text())
