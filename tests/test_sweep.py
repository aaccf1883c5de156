"""Optuna sweeps on tiny data: parallel workers on one journal file, continuation, a NaN trial,
stale RUNNING trials, nested MLflow runs, and the best parameters applied through `dvc exp`."""

import json
import time

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from colorize.config import SweepSettings
from colorize.sweep.storage import fail_stale_trials
from colorize.sweep.study import make_study
from conftest import BIN, make_pipeline_repo, run

pytestmark = pytest.mark.slow
JOURNAL = "sweeps/journal.log"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    env = make_pipeline_repo(root, sweep={"epochs": 1, "decoder_widths": [16, 32],
                                          "pruner_warmup_epochs": 0})
    run([BIN / "dvc", "repro", "preprocess"], root, env)
    return root, env


def _study(root):
    settings = SweepSettings(storage=str(root / JOURNAL))
    return optuna.load_study(study_name=settings.study, storage=make_study(settings)._storage)


def _children(root, parent):
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("colorize")
    return mlflow.search_runs([exp.experiment_id], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_parallel_workers_then_continue_then_nan_then_apply(repo):
    root, env = repo
    out = run([BIN / "colorize", "sweep", "--workers", "2", "--n-trials", "4"], root, env)
    study = _study(root)
    states = [t.state for t in study.trials]
    assert len(states) == 4 and TrialState.RUNNING not in states
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = _children(root, parent)
    assert len(children) == 4
    assert {c.data.tags["optuna_state"] for c in children} <= {"COMPLETE", "PRUNED", "FAIL"}
    assert "dvc exp run -S train.lr=" in out.stdout

    # Rerunning with a larger budget continues the same study.
    run([BIN / "colorize", "sweep", "--n-trials", "6"], root, env)
    study = _study(root)
    assert len(study.trials) == 6 and study.user_attrs["mlflow_parent_run_id"] == parent

    # A diverging trial is recorded with its reason and the sweep completes.
    study.enqueue_trial({"lr": 1e30, "decoder_width": 16})
    run([BIN / "colorize", "sweep", "--n-trials", "7"], root, env)
    nan_trial = _study(root).trials[6]
    assert nan_trial.state == TrialState.FAIL
    assert "loss is" in nan_trial.user_attrs["fail_reason"]
    assert len(_children(root, parent)) == 7

    # The best-params file applies through dvc exp and shows up as its own MLflow run.
    best = json.loads((root / "sweeps/colorize-sweep-best.json").read_text())
    assert best["trial"] != 6 and best["counts"]["FAIL"] >= 1
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "pipeline"], root, env)
    run([BIN / str(best["command"].split()[0]), *best["command"].split()[1:]], root, env)
    lr = best["params"]["train.lr"]
    exp_runs = mlflow.search_runs(
        [mlflow.get_experiment_by_name("colorize").experiment_id], output_format="list",
        filter_string="tags.dvc_experiment != 'workspace' AND params.`train.epochs` = '2'")
    assert any(abs(float(r.data.params["train.lr"]) - lr) / lr < 1e-5 for r in exp_runs)

    # --apply writes the values into params.yaml.
    run([BIN / "colorize", "sweep", "--n-trials", "7", "--apply"], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["model"]["decoder_width"] == best["params"]["model.decoder_width"]
    assert abs(params["train"]["lr"] - lr) / lr < 1e-9


def test_dead_workers_trial_is_failed_after_missed_heartbeats(tmp_path):
    settings = SweepSettings(storage=str(tmp_path / "j.log"), heartbeat_s=1)
    study = make_study(settings)
    orphan = study.ask()  # RUNNING, and nobody will ever finish or stamp it
    time.sleep(3.5)
    assert fail_stale_trials(study, settings.heartbeat_s) == [orphan.number]
    t = study.trials[0]
    assert t.state == TrialState.FAIL and "no heartbeat" in t.user_attrs["fail_reason"]


def test_new_study_starts_with_the_current_params(tmp_path):
    from colorize.config import Settings
    from colorize.sweep.study import enqueue_defaults

    settings = Settings(sweep=SweepSettings(storage=str(tmp_path / "j.log")))
    study = make_study(settings.sweep)
    enqueue_defaults(study, settings)
    enqueue_defaults(study, settings)  # only once
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].system_attrs["fixed_params"] == {
        "lr": settings.train.lr, "decoder_width": settings.model.decoder_width}
