"""An Optuna study over train.lr and model.decoder_width, run by one or more worker processes.

Each trial is the train stage's own loop (train.loop.fit) for `sweep.epochs` epochs, reported per
epoch to the pruner, and logged as an MLflow run nested under the study's parent run. Trials are
taken with ask/tell under a file lock, so parallel workers on one machine never run more than
`sweep.n_trials` in total; a trial that diverges or raises is recorded as FAIL with its reason and
the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import multiprocessing
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from colorize.config import Settings, SweepSettings
from colorize.sweep.storage import Heartbeat, fail_stale_trials, is_url, open_storage
from colorize.track import mlflow_run
from colorize.train.loop import Epoch, fit

PARENT_ATTR = "mlflow_parent_run_id"
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def make_study(sweep: SweepSettings, worker: int = 0) -> optuna.Study:
    """Open (or create) the study. Each worker gets its own sampler seed, derived from
    sweep.sampler_seed, so that parallel workers do not propose the same parameters."""
    pruner = (optuna.pruners.MedianPruner(n_warmup_steps=sweep.pruner_warmup_epochs)
              if sweep.pruner == "median" else optuna.pruners.NopPruner())
    return optuna.create_study(
        study_name=sweep.study, storage=open_storage(sweep.storage, sweep.heartbeat_s),
        sampler=optuna.samplers.TPESampler(seed=sweep.sampler_seed * 1000 + worker), pruner=pruner,
        direction="minimize", load_if_exists=True)


def parent_run_id(study: optuna.Study, settings: Settings) -> str:
    """The study's MLflow parent run, created once and remembered in the study itself."""
    if PARENT_ATTR in study.user_attrs:
        return study.user_attrs[PARENT_ATTR]
    experiment_id = mlflow_run.setup(settings.tracking.experiment)
    run = mlflow.MlflowClient().create_run(
        experiment_id, run_name=f"sweep-{study.study_name}",
        tags={"optuna_study": study.study_name, "optuna_storage": settings.sweep.storage,
              **mlflow_run.run_tags("data/interim/manifest.csv")})
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def enqueue_defaults(study: optuna.Study, base: Settings) -> None:
    """A new study's first trial runs the current params.yaml values, so the sweep always
    reports the default configuration beside what it found."""
    if study.trials or base.model.decoder_width not in base.sweep.decoder_widths:
        return
    if not base.sweep.lr_min <= base.train.lr <= base.sweep.lr_max:
        return
    study.enqueue_trial({"lr": base.train.lr, "decoder_width": base.model.decoder_width},
                        user_attrs={"defaults": True})


def trial_settings(base: Settings, trial: optuna.Trial) -> Settings:
    sweep = base.sweep
    lr = trial.suggest_float("lr", sweep.lr_min, sweep.lr_max, log=True)
    width = trial.suggest_categorical("decoder_width", list(sweep.decoder_widths))
    return dataclasses.replace(
        base, train=dataclasses.replace(base.train, lr=lr, epochs=sweep.epochs),
        model=dataclasses.replace(base.model, decoder_width=width))


def run_trial(trial: optuna.Trial, base: Settings, parent: str, data_dir: Path) -> float:
    settings = trial_settings(base, trial)
    with mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.log_params({"train.lr": settings.train.lr, "train.epochs": settings.train.epochs,
                           "model.decoder_width": settings.model.decoder_width,
                           "optuna_trial": trial.number})

        def on_epoch(e: Epoch, model) -> None:
            mlflow.log_metrics({"train_loss": e.train_loss, "val_loss": e.val_loss}, step=e.epoch)
            trial.report(e.val_loss, e.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val_loss {e.val_loss:.5f} at epoch {e.epoch} is worse "
                                         "than the median of earlier trials")

        try:
            with tempfile.TemporaryDirectory() as ckpt:
                result = fit(settings, data_dir, ckpt, on_epoch=on_epoch, log=lambda _: None)
        except optuna.TrialPruned as e:
            mlflow.set_tags({"optuna_state": "PRUNED", "reason": str(e)})
            raise
        except Exception as e:
            mlflow.set_tags({"optuna_state": "FAIL", "reason": f"{type(e).__name__}: {e}"})
            raise
        mlflow.log_metrics({"best_val_loss": result.best_val_loss,
                            "best_epoch": result.best_epoch})
        mlflow.set_tag("optuna_state", "COMPLETE")
        return result.best_val_loss


@contextmanager
def _ask_lock(sweep: SweepSettings):
    """Serialize 'count trials, then ask' among processes sharing a journal file."""
    if is_url(sweep.storage):
        yield  # many machines: no shared lock; at most workers-1 extra trials
        return
    path = Path(sweep.storage).with_suffix(".ask.lock")
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def work(base: Settings, data_dir: str | Path = "data/processed", threads: int | None = None,
         worker: int = 0) -> int:
    """One worker: run trials until the study holds sweep.n_trials. Returns trials it ran."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    sweep = base.sweep
    study = make_study(sweep, worker)
    mlflow_run.setup(base.tracking.experiment)
    parent = parent_run_id(study, base)
    ran = 0
    while True:
        for number in fail_stale_trials(study, sweep.heartbeat_s):
            print(f"trial {number}: marked FAIL (its worker stopped)")
        with _ask_lock(sweep):
            taken = study.get_trials(deepcopy=False, states=TAKEN)  # WAITING = enqueued, not run
            if len(taken) >= sweep.n_trials:
                return ran
            trial = study.ask()
        ran += 1
        with Heartbeat(study._storage, trial._trial_id, sweep.heartbeat_s):  # no-op for RDB
            state, value, note = _attempt(trial, base, parent, Path(data_dir))
        if state == TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            trial.set_user_attr("fail_reason" if state == TrialState.FAIL else "prune_reason",
                                note)
            study.tell(trial, state=state)
        print(f"trial {trial.number} (lr={trial.params.get('lr', math.nan):.2e}, "
              f"width={trial.params.get('decoder_width')}): {state.name}"
              + (f" {value:.5f}" if value is not None else f" ({note})"))


def _attempt(trial, base, parent, data_dir) -> tuple[TrialState, float | None, str]:
    try:
        value = run_trial(trial, base, parent, data_dir)
    except optuna.TrialPruned as e:
        return TrialState.PRUNED, None, str(e)
    except Exception as e:  # a diverged (NaN) or broken trial must not stop the sweep
        return TrialState.FAIL, None, f"{type(e).__name__}: {e}"
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"objective is {value}"
    return TrialState.COMPLETE, value, ""


def run_workers(base: Settings, workers: int, data_dir: str | Path = "data/processed") -> None:
    """Run `workers` processes on the shared study (in-process when workers == 1)."""
    # Create the study, the MLflow store and the parent run once, before workers race to.
    mlflow_run.setup(base.tracking.experiment)
    study = make_study(base.sweep)
    parent_run_id(study, base)
    enqueue_defaults(study, base)
    if workers == 1:
        work(base, data_dir)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=work, args=(base, str(data_dir), threads, i))
             for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} sweep worker(s) exited with codes {bad}; the study keeps "
                           "every finished trial; rerun to continue")
