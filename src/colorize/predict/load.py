"""Resolve a model spec to a network, explicitly, without running code from model files.

Specs: a model file (models/model.pt or a training checkpoint last.pt), `models:/NAME@ALIAS`,
`models:/NAME/VERSION`, or `runs:/RUN_ID`. With none, the repository's models/model.pt, found
from the repository root (not the current folder). Registry and run specs download the run's
weights file (`checkpoint/model.pt`) and read it like any model file, with weights_only=True:
neither MLflow's pickled flavours nor a model's logged code are ever executed. A tracking store
is only ever opened, never created.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from colorize.decoding import Decoding
from colorize.errors import UserError
from colorize.model.file import ModelError, load_model
from colorize.model.network import Colorizer
from colorize.paths import find_root

DEFAULT_MODEL = Path("models") / "model.pt"
CHOICES = ("--model PATH (a model file, e.g. models/model.pt), --model models:/colorizer@champion"
           " (or @workspace, /VERSION), or --model runs:/<run id>")


@dataclass
class Resolved:
    model: Colorizer
    size: int
    description: str  # what it is, for the user: path or registry version, with its run
    decoding: Decoding | None = None  # what a registry version was evaluated at, if known
    metrics: dict[str, float] | None = None  # a registry or run model's test-split headline


def resolve(spec: str | None, device: str = "auto") -> Resolved:
    """The model a spec names (None: the workspace's), on `device` (model/file.py: "auto" is
    the GPU where there is one)."""
    if spec is None:
        root = find_root()
        if root is None or not (root / DEFAULT_MODEL).is_file():
            where = (f"{root / DEFAULT_MODEL} does not exist (run `dvc repro`)" if root else
                     f"{Path.cwd()} is not inside a colorize repository")
            raise ModelError(f"no model given and {where}; choose one with {CHOICES}")
        spec = str(root / DEFAULT_MODEL)
    if spec.startswith(("models:/", "runs:/")):
        return _from_mlflow(spec, device)
    if not Path(spec).exists():
        raise ModelError(f"{spec}: no such model file; choose one with {CHOICES}")
    model, size, meta = load_model(spec, device)
    return Resolved(model, size, f"{spec} ({_about(model, size, meta)})")


def _about(model: Colorizer, size: int, meta: dict) -> str:
    parts = [f"{model.config.head} head", f"trunk depth {model.config.trunk_depth}",
             f"working size {size}"]
    if meta.get("run_id"):
        parts.append(f"run {meta['run_id'][:8]}")
    if meta.get("best_epoch"):
        parts.append(f"best epoch {meta['best_epoch']}")
    if meta.get("checkpoint"):
        parts.append(f"training checkpoint after {meta['epochs_done']} epochs")
    return ", ".join(parts)


def use_tracking_store() -> None:
    """Point MLflow at an existing store: the server in MLFLOW_TRACKING_URI, or the
    repository's mlflow.db. Never creates one."""
    import mlflow

    from colorize.track.mlflow_run import check_tracking_uri
    from colorize.track.store import STORE, relocate

    check_tracking_uri()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        root = find_root()
        db = root / STORE if root else None
        if db is None or not db.is_file():
            raise ModelError(f"no MLflow store to resolve registry models: "
                             f"{db or 'no repository here'} does not exist and "
                             "MLFLOW_TRACKING_URI is not set (run from the repository after "
                             "`dvc repro`, or set MLFLOW_TRACKING_URI to your server)")
        relocate(root)
        mlflow.set_tracking_uri(f"sqlite:///{db}")


def _client():
    import mlflow

    use_tracking_store()
    return mlflow.MlflowClient()


def _from_mlflow(spec: str, device: str) -> Resolved:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        decoding = None
        if spec.startswith("runs:/"):
            run_id = spec.removeprefix("runs:/").split("/")[0]
            label = f"run {run_id[:8]}"
        else:
            name, sep, ref = spec.removeprefix("models:/").partition("@")
            if sep:
                mv = client.get_model_version_by_alias(name, ref)
            else:
                name, _, number = name.partition("/")
                mv = client.get_model_version(name, number)
            run_id = mv.run_id
            label = f"{name} version {mv.version}, run {run_id[:8]}"
            decoding = Decoding.from_tags(mv.tags)
        run = client.get_run(run_id)
        run_name = run.info.run_name
        metrics = {k: v for k, v in run.data.metrics.items() if k in HEADLINE}
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "checkpoint/model.pt", tmp)
            model, size, _ = load_model(path, device)
    except MlflowException as e:
        raise ModelError(f"{spec}: cannot be resolved ({e.message.splitlines()[0][:160]}); "
                         f"choose one with {CHOICES}") from None
    return Resolved(model, size, f"{spec} = {label} ({run_name}; {model.config.head} head)",
                    decoding, metrics)


# The evaluation's headline metrics (track/models.py logs them on the pipeline's run).
HEADLINE = ("eval_model_ciede2000", "eval_gray_ciede2000", "eval_model_auc")


def registered_specs(name: str) -> list[str]:
    """`models:/NAME/VERSION` for every version of the registered model, newest first, and
    `models:/NAME@ALIAS` for its aliases; empty when there is no store or no such model (the
    browser app then offers the workspace file alone)."""
    from mlflow.exceptions import MlflowException

    try:
        client = _client()
        model = client.get_registered_model(name)  # its aliases (version search omits them)
        versions = client.search_model_versions(f"name = '{name}'")
    except (UserError, MlflowException):  # no store, a bad tracking URI, no such model
        return []
    numbers = sorted((int(v.version) for v in versions), reverse=True)
    return ([f"models:/{name}@{a}" for a in sorted(model.aliases or {})]
            + [f"models:/{name}/{n}" for n in numbers])
