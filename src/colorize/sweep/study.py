"""An Optuna study over the learning rate, decoder width, head, trunk depth and rebalancing,
run by one or more worker processes, on one machine or many.

Each trial is the train stage's own loop (train.loop.fit) for `sweep.epochs` epochs. After each
epoch the objective `sweep.metric` is measured on the validation split (evaluate's scorer) at
every evaluate.temperature for the classification head, the best temperature counts (so T is
searched without retraining), and the value goes to the pruner. Validation losses of the two heads
are not comparable, so the default objective is CIEDE2000. Each trial is an MLflow run nested
under the study's parent run. Trials are taken with ask/tell under a lock (a file lock next to a
journal file, an advisory lock in PostgreSQL), so parallel workers never run more than
`sweep.n_trials` in total; a trial that diverges or raises is recorded as FAIL with its reason
and the sweep goes on. (The sweep runs trials and scores them, so it uses train.loop and
evaluate.score; neither imports the sweep.)

On many machines (an RDB URL), every check-then-act step runs under the study's lock
(storage.study_lock): creating the study, its MLflow parent run and the enqueued defaults happen
once however many `colorize sweep` commands start at the same moment, and "count the trials, then
ask" never lets the study exceed sweep.n_trials.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from colorize.config import Settings, SweepSettings
from colorize.decoding import NEUTRAL, Decoding
from colorize.evaluate.score import score
from colorize.model import bins
from colorize.preprocess.store import LabStore
from colorize.sweep.storage import (
    Heartbeat,
    fail_stale_trials,
    open_storage,
    redact,
    study_lock,
    take_trial,
    trial_id_of,
)
from colorize.track import mlflow_run
from colorize.train.checkpoint import Checkpoints
from colorize.train.loop import Epoch, fit

PARENT_ATTR = "mlflow_parent_run_id"
MAXIMIZE = {"auc", "auc_rebalanced"}


def direction(metric: str) -> str:
    return "maximize" if metric in MAXIMIZE else "minimize"


def make_study(sweep: SweepSettings, worker: int = 0) -> optuna.Study:
    """Open (or create) the study, when its storage is not needed (see open_study)."""
    return open_study(sweep, worker)[0]


def open_study(sweep: SweepSettings, worker: int = 0) -> tuple[optuna.Study, BaseStorage]:
    """Open (or create) the study; returns it with the storage it was opened on (open_storage):
    heartbeats and failing stale trials use that one, never the study's private storage. Each
    worker gets its own sampler seed, derived from sweep.sampler_seed, so that parallel workers
    do not propose the same parameters. Under the study's lock: on a fresh database, Optuna's
    table creation races between processes."""
    pruner = (optuna.pruners.MedianPruner(n_warmup_steps=sweep.pruner_warmup_epochs)
              if sweep.pruner == "median" else optuna.pruners.NopPruner())
    with study_lock(sweep.storage, sweep.study):
        storage = open_storage(sweep.storage, sweep.heartbeat_s)
        study = optuna.create_study(
            study_name=sweep.study, storage=storage,
            sampler=optuna.samplers.TPESampler(seed=sweep.sampler_seed * 1000 + worker),
            pruner=pruner, direction=direction(sweep.metric), load_if_exists=True)
    return study, storage


def parent_run_id(study: optuna.Study, settings: Settings, manifest: str | Path) -> str:
    """The study's MLflow parent run, created once and remembered in the study itself (call it
    under study_lock where several commands may start the study at once)."""
    if PARENT_ATTR in study.user_attrs:
        return study.user_attrs[PARENT_ATTR]
    experiment_id = mlflow_run.setup(settings.tracking.experiment)
    # Named after the study; not a DVC experiment, so no dvc_experiment tag.
    tags = {k: v for k, v in mlflow_run.run_tags(manifest).items() if k != "dvc_experiment"}
    run = mlflow.MlflowClient().create_run(
        experiment_id, run_name=study.study_name,
        tags={"optuna_study": study.study_name,
              "optuna_storage": redact(settings.sweep.storage), **tags})
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def enqueue_defaults(study: optuna.Study, base: Settings) -> None:
    """A new study's first trial runs the current params.yaml values (when they lie inside the
    search space), so the sweep always reports the default configuration beside what it found."""
    sweep, m, t = base.sweep, base.model, base.train
    inside = (m.decoder_width in sweep.decoder_widths and m.head in sweep.heads
              and m.trunk_depth in sweep.trunk_depths and sweep.lr_min <= t.lr <= sweep.lr_max
              and (m.head == "regression"
                   or sweep.rebalance_min <= t.rebalance <= sweep.rebalance_max))
    if study.trials or not inside:
        return
    fixed = {"lr": t.lr, "decoder_width": m.decoder_width, "head": m.head,
             "trunk_depth": m.trunk_depth}
    if m.head == "classification":
        fixed["rebalance"] = t.rebalance
    study.enqueue_trial(fixed, user_attrs={"defaults": True})


def trial_settings(base: Settings, trial: optuna.Trial) -> Settings:
    sweep = base.sweep
    lr = trial.suggest_float("lr", sweep.lr_min, sweep.lr_max, log=True)
    width = trial.suggest_categorical("decoder_width", list(sweep.decoder_widths))
    head = trial.suggest_categorical("head", list(sweep.heads))
    depth = trial.suggest_categorical("trunk_depth", list(sweep.trunk_depths))
    rebalance = (trial.suggest_float("rebalance", sweep.rebalance_min, sweep.rebalance_max)
                 if head == "classification" else base.train.rebalance)
    return base.override(train={"lr": lr, "epochs": sweep.epochs, "rebalance": rebalance},
                         model={"decoder_width": width, "head": head, "trunk_depth": depth})


class Objective:
    """The per-epoch value of sweep.metric, best over the temperatures scored."""

    def __init__(self, settings: Settings, data_dir: Path, prior: np.ndarray):
        self.metric = settings.sweep.metric
        self.store = LabStore(data_dir / "val") if self.metric != "val_loss" else None
        self.prior, self.settings = prior, settings
        self.maximize = self.metric in MAXIMIZE
        # What evaluate calls the validation split's score (track/models.py: val_model_*).
        self.metric_name = (f"{mlflow_run.CURVES}val_loss" if self.metric == "val_loss"
                            else f"val_model_{self.metric}")

    def better(self, a: float, b: float | None) -> bool:
        return b is None or (a > b if self.maximize else a < b)

    def __call__(self, e: Epoch, model) -> tuple[float, float | None]:
        """-> (value, the temperature that gave it; None for regression or val_loss). The
        classification head is decoded at evaluate.prior_correction and each temperature."""
        if self.metric == "val_loss":
            return e.val_loss, None
        alpha = self.settings.evaluate.prior_correction
        classification = model.config.head == "classification"
        decoded = ([Decoding(t, alpha) for t in self.settings.evaluate.temperatures]
                   if classification else [NEUTRAL])
        scores = score(model, self.store, self.prior, decoded,
                       self.settings.evaluate.batch_size, wanted=(self.metric,), gray=False,
                       progress=False)
        values = {d.temperature: scores[d].summary()[self.metric] for d in decoded}
        t = (max if self.maximize else min)(values, key=values.get)
        return values[t], (t if classification else None)


def run_trial(trial: optuna.Trial, base: Settings, parent: str, data_dir: Path,
              prior: np.ndarray) -> float:
    best: dict = {"value": None, "temperature": None, "epoch": 0}
    with mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        try:
            settings = trial_settings(base, trial)
            trial.set_user_attr("epochs", settings.train.epochs)
            objective = Objective(settings, data_dir, prior)
            mlflow.log_params({**{k: v for k, v in settings.flat().items()
                                  if k.split(".")[0] in ("model", "train")},
                               "optuna_trial": trial.number})

            def on_epoch(e: Epoch, model) -> None:
                value, t = objective(e, model)
                # The evaluation's name for the validation split's score (val_model_*), so
                # trials sort beside pipeline runs in the MLflow UI.
                mlflow.log_metrics({f"{mlflow_run.CURVES}train_loss": e.train_loss,
                                    f"{mlflow_run.CURVES}val_loss": e.val_loss,
                                    objective.metric_name: value}, step=e.epoch)
                if objective.better(value, best["value"]):
                    best.update(value=value, temperature=t, epoch=e.epoch)
                trial.report(value, e.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{objective.metric} {value:.5f} at epoch {e.epoch} "
                                             "is worse than the median of earlier trials")

            with tempfile.TemporaryDirectory() as folder:
                checkpoints = Checkpoints(folder, code="", epochs=settings.train.epochs,
                                          log=lambda _: None)
                fit(settings, data_dir, checkpoints, prior, on_epoch=on_epoch,
                    log=lambda _: None, progress=False)
        except optuna.TrialPruned as e:
            mlflow.set_tags({"optuna_state": "PRUNED", "reason": str(e)})
            raise
        except Exception as e:
            mlflow.set_tags({"optuna_state": "FAIL", "reason": f"{type(e).__name__}: {e}"})
            raise
        if best["temperature"] is not None:
            trial.set_user_attr("temperature", best["temperature"])
        trial.set_user_attr("best_epoch", best["epoch"])
        mlflow.log_metrics({f"best_{objective.metric}": best["value"],
                            "best_epoch": best["epoch"]})
        mlflow.set_tags({"optuna_state": "COMPLETE",
                         "temperature": str(best["temperature"] or "")})
        return best["value"]


def work(base: Settings, data_dir: str | Path, prior_path: str | Path, manifest: str | Path,
         threads: int | None = None, worker: int = 0) -> int:
    """One worker: run trials until the study holds sweep.n_trials. Returns trials it ran."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    sweep = base.sweep
    study, storage = open_study(sweep, worker)
    prior = bins.load_prior(prior_path)
    mlflow_run.setup(base.tracking.experiment)
    parent = parent_run_id(study, base, manifest)
    ran = 0
    while True:
        for number in fail_stale_trials(study, storage, sweep.heartbeat_s):
            print(f"trial {number}: marked FAIL (its worker stopped)")
            _close_orphan_run(study, number)
        trial = take_trial(study, sweep, storage)
        if trial is None:
            return ran
        ran += 1
        with Heartbeat(storage, trial_id_of(storage, study, trial.number), sweep.heartbeat_s):
            state, value, note = _attempt(trial, base, parent, Path(data_dir), prior)
        # Another worker may have failed this trial meanwhile (its heartbeat missed for too
        # long, e.g. the database was unreachable): keep that verdict, and go on.
        try:
            if state != TrialState.COMPLETE:
                trial.set_user_attr(
                    "fail_reason" if state == TrialState.FAIL else "prune_reason", note)
            told = study.tell(trial, value if state == TrialState.COMPLETE else None,
                              state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            told = None
        if told is None or told.state != state:
            print(f"trial {trial.number}: already marked FAIL by another worker")
            continue
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.params.items())
        print(f"trial {trial.number} ({params}): {state.name}"
              + (f" {sweep.metric} {value:.5f}" if value is not None else f" ({note})"))


def _close_orphan_run(study: optuna.Study, number: int) -> None:
    """A dead worker's trial run would stay RUNNING in MLflow forever: end it as FAILED, with
    the same state and reason tags as any failed trial."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id is None:  # killed before its run was created
        return
    client = mlflow.MlflowClient()
    try:
        client.set_tag(run_id, "optuna_state", "FAIL")
        client.set_tag(run_id, "reason", trial.user_attrs.get("fail_reason", "worker stopped"))
        client.set_terminated(run_id, "FAILED")
    except MlflowException as e:  # e.g. the run was deleted: the study's verdict stands
        print(f"trial {number}: its MLflow run {run_id} not closed ({e.message[:160]})")


def _attempt(trial, base, parent, data_dir, prior) -> tuple[TrialState, float | None, str]:
    try:
        value = run_trial(trial, base, parent, data_dir, prior)
    except optuna.TrialPruned as e:
        return TrialState.PRUNED, None, str(e)
    except Exception as e:  # a diverged (NaN) or broken trial must not stop the sweep
        return TrialState.FAIL, None, f"{type(e).__name__}: {e}"
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"objective is {value}"
    return TrialState.COMPLETE, value, ""


def run_workers(base: Settings, workers: int, data_dir: str | Path, prior_path: str | Path,
                manifest: str | Path) -> None:
    """Run `workers` processes on the shared study (in-process when workers == 1)."""
    # Create the study, the MLflow store and the parent run once, before workers race to; under
    # the study's lock, for commands started at the same time on other machines.
    study = make_study(base.sweep)
    with study_lock(base.sweep.storage, base.sweep.study):
        mlflow_run.setup(base.tracking.experiment)  # creating the experiment races too
        parent_run_id(study, base, manifest)
        enqueue_defaults(study, base)
    if workers == 1:
        work(base, data_dir, prior_path, manifest)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=work, args=(base, str(data_dir), str(prior_path), str(manifest),
                                            threads, i))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} sweep worker(s) exited with codes {bad}; the study keeps "
                           "every finished trial; rerun to continue")
