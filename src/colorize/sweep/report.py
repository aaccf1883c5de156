"""After a sweep: best parameters to a file and a command, MLflow tags and plots, --apply."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from colorize.config import Settings  # noqa: E402
from colorize.sweep.study import PARENT_ATTR  # noqa: E402

PARAM_KEYS = {"lr": "train.lr", "decoder_width": "model.decoder_width", "head": "model.head",
              "trunk_depth": "model.trunk_depth", "rebalance": "train.rebalance"}


def best_params(study: optuna.Study, metric: str) -> dict | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    # Six significant digits: what is printed, written to params.yaml and put in the command
    # are one and the same value (an lr of 0.0012520653814999472 is written as 0.00125207).
    params = {PARAM_KEYS[k]: float(f"{v:.6g}") if isinstance(v, float) else v
              for k, v in best.params.items()}
    if "temperature" in best.user_attrs:  # chosen without retraining, on the same objective
        params["evaluate.temperature"] = best.user_attrs["temperature"]
    return {
        "study": study.study_name,
        "trial": best.number,
        "metric": metric,
        "value": best.value,
        "params": params,
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "epochs": best.user_attrs.get("epochs"),  # how long the trial trained
        "counts": {s.name: len(study.get_trials(deepcopy=False, states=(s,)))
                   for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)},
    }


def apply_command(best: dict) -> str:
    sets = " ".join(f"-S {k}={_fmt(v)}" for k, v in best["params"].items())
    return f"dvc exp run {sets}"


def write_best(best: dict, out_dir: str | Path = "sweeps") -> Path:
    path = Path(out_dir) / f"{best['study']}-best.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**best, "command": apply_command(best)}, indent=2) + "\n")
    return path


def apply_to_params(best: dict, params_path: str | Path = "params.yaml") -> None:
    """Write the best values into params.yaml, keeping its comments and layout."""
    from ruamel.yaml import YAML

    yaml = YAML()
    path = Path(params_path)
    doc = yaml.load(path.read_text())
    for dotted, value in best["params"].items():
        section, key = dotted.split(".")
        doc[section][key] = value
    with path.open("w") as f:
        yaml.dump(doc, f)


def log_to_parent(study: optuna.Study, settings: Settings, best: dict | None) -> None:
    """Tag the best trial's run; put the study's plots and best values on the parent run."""
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:
        return
    client = mlflow.MlflowClient()
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, "best_trial", str(best is not None and
                                                     t.number == best["trial"]).lower())
    with mlflow.start_run(run_id=parent):
        # Tags, not params: a continued study may change n_trials or epochs between calls.
        mlflow.set_tags({f"sweep.{k}": str(v)
                         for k, v in settings.sweep.model_dump().items()})
        mlflow.log_metric("trials", len(study.trials))
        if best:
            mlflow.log_metric(f"best_{best['metric']}", best["value"])
            mlflow.set_tags({"best_trial": best["trial"], "apply": apply_command(best),
                             **{f"best.{k}": v for k, v in best["params"].items()}})
        with tempfile.TemporaryDirectory() as tmp:
            for name, plot in _plots(study).items():
                path = Path(tmp) / f"{name}.png"
                plot.figure.savefig(path, dpi=110, bbox_inches="tight")
                plt.close(plot.figure)
                mlflow.log_artifact(str(path), "sweep")


def _plots(study: optuna.Study) -> dict:
    import warnings

    from optuna.visualization import matplotlib as ov

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    plots = {"optimization_history": ov.plot_optimization_history(study)}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2:
        plots["parallel_coordinate"] = ov.plot_parallel_coordinate(study)
        try:
            plots["param_importances"] = ov.plot_param_importances(study)
        except (RuntimeError, ValueError):  # e.g. a parameter took a single value
            pass
    return plots


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
