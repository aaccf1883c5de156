"""Logging and registering models, and the registry's aliases: the one owner of both.

For the pipeline's run, after evaluation:
  - the evaluation's metrics (eval_model_*, eval_gray_*: the test split, the headline;
    val_model_*, val_gray_*: validation), grid, curves and trade-off table;
  - the network with MLflow's torch flavour (`model`; the pt2 format: a torch.export graph, no
    pickle; tensors in, the head's raw output out);
  - the weights file itself (`checkpoint/model.pt`), which `colorize predict` downloads and reads
    with weights_only=True;
  - `colorizer`, a pyfunc logged from code (colorize/predict/service.py, named here by its path:
    tracking never imports serving) that takes image files and answers colorized images, with
    the evaluated decoding as its config, registered as a new version of
    tracking.registered_model, described and tagged (experiment, commit, data, head, decoding,
    metrics).
Aliases: a `dvc repro` in the workspace moves tracking.alias (@workspace) to its version;
queued and other `dvc exp run` experiments and sweeps move none. `colorize promote VERSION`
sets @champion. Concurrent evaluations never leave an alias on an older version: the alias is
set to the newest qualifying version and re-checked after every write (below).
"""

from __future__ import annotations

import base64
import contextlib
import time
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ColSpec, Schema

from colorize import lab
from colorize.config import Settings
from colorize.decoding import NEUTRAL, Decoding
from colorize.errors import UserError
from colorize.imaging import encode_png
from colorize.model.file import load_model
from colorize.paths import project_root
from colorize.track import mlflow_run

PIPELINE_TAG = "pipeline"  # version tag: "workspace" for dvc repro, else the experiment's name
SERVICE = Path(__file__).resolve().parents[1] / "predict" / "service.py"
CHECKPOINT_DIR = "checkpoint"


def log_evaluation(settings: Settings, results: dict, *, run_file: str | Path,
                   model_path: str | Path, files: list[str | Path]) -> str | None:
    """Add the evaluation and the model to the pipeline's run; register and alias the model.
    Returns the registered version (None with tracking.log_model false)."""
    info = mlflow_run.read_run_file(run_file)
    mlflow_run.setup(settings.tracking.experiment)
    with mlflow.start_run(run_id=info["run_id"]):
        # eval_*: the headline split (test; validation when there is none); val_*: validation.
        head, val = results[results["headline"]], results["val"]
        for name in ("model", "gray"):
            mlflow.log_metrics({f"eval_{name}_{k}": v for k, v in head[name].items()})
            mlflow.log_metrics({f"val_{name}_{k}": v for k, v in val[name].items()})
        mlflow.set_tag("eval_split", results["headline"])
        for f in files:
            mlflow.log_artifact(str(f), "evaluation")
        if not settings.tracking.log_model:
            return None
        model, size, _ = load_model(model_path)
        log_network(model, size)
        mlflow.log_artifact(str(model_path), CHECKPOINT_DIR)
        logged = log_service(settings, model_path, evaluated_decoding(results))
    version = str(logged.registered_model_version)
    describe(settings, version, info["run_id"], results)
    if mlflow_run.experiment_name() == "workspace":
        point_alias(settings.tracking.registered_model, settings.tracking.alias)
    print(f"registered {settings.tracking.registered_model} version {version} "
          f"(run {info['run_id']})")
    return version


def log_network(model: torch.nn.Module, size: int) -> None:
    example = np.zeros((2, 1, size, size), np.float32)  # batch > 1: a dynamic batch dim
    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    mlflow.pytorch.log_model(model, name="model", input_example=example, signature=signature,
                             pip_requirements=requirements(),
                             metadata={"working_size": size, "head": model.config.head})


def evaluated_decoding(results: dict) -> Decoding | None:
    """The decoding the evaluation reported (classification head), else None."""
    if "temperature" not in results:
        return None
    return Decoding(results["temperature"], results["prior_correction"])


def log_service(settings: Settings, model_path: str | Path, decoding: Decoding | None):
    """The served model: service.py's protocol, one image column in, image and error out;
    the request parameters default to the evaluated decoding (also the model's config)."""
    sample = lab.lab_to_rgb8(np.dstack([np.linspace(20, 80, 64 * 48).reshape(48, 64),
                                        np.zeros((48, 64, 2))]))
    request = pd.DataFrame({"image": [base64.b64encode(encode_png(sample)).decode("ascii")]})
    answer = pd.DataFrame({"image": [""], "error": [""]})
    params = (decoding or NEUTRAL).params()
    inferred = infer_signature(request, answer, params)
    # `hints` (JSON text per row) is optional: requests without it stay valid.
    signature = ModelSignature(Schema([ColSpec("string", "image"),
                                       ColSpec("string", "hints", required=False)]),
                               inferred.outputs, inferred.params)
    return mlflow.pyfunc.log_model(
        name="colorizer", python_model=str(SERVICE), artifacts={"checkpoint": str(model_path)},
        model_config={"decoding": decoding.params()} if decoding else None,
        input_example=(request, params), signature=signature,
        registered_model_name=settings.tracking.registered_model,
        pip_requirements=requirements())


def requirements() -> list[str]:
    """Pinned versions of what the served model imports (besides colorize itself, which is not
    on PyPI: serve from the project's environment with --env-manager local)."""
    return [f"{p}=={package_version(p)}" for p in ("torch", "torchvision", "numpy",
                                                   "opencv-python-headless", "mlflow",
                                                   "pydantic")]


def describe(settings: Settings, version: str, run_id: str, results: dict) -> None:
    """Tags and a one-line description, so versions can be told apart in the registry."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    split = results["headline"]
    m, g = results[split]["model"], results[split]["gray"]
    experiment = mlflow_run.experiment_name()
    decoding = evaluated_decoding(results)
    tags = {PIPELINE_TAG: experiment, "git_commit": run.data.tags.get("git_commit", ""),
            "data_manifest_sha256": run.data.tags.get("data_manifest_sha256", ""),
            "head": results["head"], "hints": str(results.get("hints", False)).lower(),
            **(decoding.tags() if decoding else {}),
            "epochs": run.data.params.get("train.epochs", ""),
            **{f"eval_{k}": str(v) for k, v in m.items()}}
    name = settings.tracking.registered_model
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    T = (f" at T={decoding.temperature:g}, prior correction "
         f"{decoding.prior_correction:g}" if decoding else "")
    client.update_model_version(name, version, description=(
        f"{experiment} ({run.info.run_name}), {results['head']} head{T}, "
        f"{run.data.params.get('train.epochs', '?')} epochs, commit "
        f"{tags['git_commit'][:8]}: {split} split CIEDE2000 {m['ciede2000']} "
        f"(gray {g['ciede2000']}), AuC {m['auc']} (gray {g['auc']}), colourfulness "
        f"{m['colourfulness_ratio']}x"))


def point_alias(name: str, alias: str, attempts: int = 10) -> str:
    """Point `alias` at the newest version produced in the workspace (tag pipeline=workspace).

    Setting it to the newest qualifying version (not to "mine") and re-reading after each write
    makes concurrent evaluations converge: the last writer always sees every version registered
    before its read. The local store also takes a file lock around it."""
    client = mlflow.MlflowClient()
    lock = (FileLock(str(project_root() / f".{name}.alias.lock"))
            if mlflow_run.is_local() else None)
    with lock or contextlib.nullcontext():
        for _ in range(attempts):
            newest = max((int(v.version) for v in client.search_model_versions(
                f"name = '{name}' AND tag.{PIPELINE_TAG} = 'workspace'")), default=None)
            if newest is None:
                raise UserError(f"{name}: no version was produced in the workspace yet")
            try:
                current = int(client.get_model_version_by_alias(name, alias).version)
            except MlflowException:
                current = None
            if current == newest:
                return str(newest)
            client.set_registered_model_alias(name, alias, str(newest))
            time.sleep(0.05)
    return str(newest)


def promote(name: str, version: str, alias: str) -> None:
    """Set `alias` (e.g. champion) on an existing version; the README's serve example uses it."""
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise UserError(f"{name} has no version {version!r} (versions: {versions or 'none'}; "
                        "see `mlflow ui` or the README's registry section)") from None
    client.set_registered_model_alias(name, alias, mv.version)
    print(f"{name}@{alias} -> version {mv.version}: {mv.description or ''}")
