"""Optuna sweeps on tiny data: parallel workers on one journal file, continuation, a NaN trial,
stale RUNNING trials, nested MLflow runs, and the best parameters applied through `dvc exp`."""

import json
import time

import mlflow
import pytest
import yaml
from optuna.trial import TrialState

from colorize.sweep.storage import fail_stale_trials
from colorize.sweep.study import make_study
from conftest import BIN, copy_repo, run, set_params

pytestmark = pytest.mark.slow
JOURNAL = "sweeps/journal.log"


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory):
    root, env = copy_repo(built_repo, tmp_path_factory.mktemp("sweep") / "repo")
    set_params(root, sweep={"epochs": 1, "decoder_widths": [16, 32], "pruner_warmup_epochs": 0})
    return root, env


def _sweep_settings(settings, **values):
    return settings.override(sweep=values).sweep


def _study(root, settings):
    s = _sweep_settings(settings, storage=str(root / JOURNAL))
    return make_study(s)


def _children(root, parent):
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("colorize")
    return mlflow.search_runs([exp.experiment_id], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_parallel_workers_then_continue_then_nan_then_apply(repo, settings):
    root, env = repo
    out = run([BIN / "colorize", "sweep", "--workers", "2", "--n-trials", "4"], root, env)
    study = _study(root, settings)
    states = [t.state for t in study.trials]
    assert len(states) == 4 and TrialState.RUNNING not in states
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = _children(root, parent)
    assert len(children) == 4
    assert {c.data.tags["optuna_state"] for c in children} <= {"COMPLETE", "PRUNED", "FAIL"}
    # Trials log the evaluation's name for a validation score, so they sort with the pipeline's
    # runs; the parent is named after the study and claims no DVC experiment.
    assert all("val_model_ciede2000" in c.data.metrics for c in children
               if c.data.tags["optuna_state"] == "COMPLETE")
    parent_run = mlflow.MlflowClient().get_run(parent)
    assert parent_run.info.run_name == "colorize-sweep"
    assert "dvc_experiment" not in parent_run.data.tags
    assert "dvc exp run -S train.lr=" in out.stdout

    # Rerunning with a larger budget continues the same study.
    run([BIN / "colorize", "sweep", "--n-trials", "6"], root, env)
    study = _study(root, settings)
    assert len(study.trials) == 6 and study.user_attrs["mlflow_parent_run_id"] == parent

    # A trial that raises (here: an impossible learning rate) is recorded with its reason and
    # the sweep completes.
    study.enqueue_trial({"lr": 1e30, "decoder_width": 16, "head": "regression",
                         "trunk_depth": 2})
    run([BIN / "colorize", "sweep", "--n-trials", "7"], root, env)
    bad_trial = _study(root, settings).trials[6]
    assert bad_trial.state == TrialState.FAIL
    assert "train.lr: 1e+30 is out of range" in bad_trial.user_attrs["fail_reason"]
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

    # --apply runs nothing: it writes the best trial's values into params.yaml.
    out = run([BIN / "colorize", "sweep", "--n-trials", "9", "--apply"], root, env).stdout
    assert len(_study(root, settings).trials) == 7
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["model"]["decoder_width"] == best["params"]["model.decoder_width"]
    assert params["model"]["head"] == best["params"]["model.head"]
    # What it prints is what it writes (6 significant digits), and how long the trial trained.
    assert params["train"]["lr"] == lr and len(f"{lr:.6g}") >= len(repr(lr))
    assert f"train.lr: {lr}" in out and "after 1 epoch(s) of training" in out
    if best["params"]["model.head"] == "classification":  # T was chosen without retraining
        assert params["evaluate"]["temperature"] == best["params"]["evaluate.temperature"]


def test_dead_workers_trial_is_failed_after_missed_heartbeats(tmp_path, settings):
    """A journal file: a trial is failed once its last heartbeat is over 3 x heartbeat_s old,
    not before. The heartbeats and the check share an injected clock: nothing sleeps."""
    from colorize.sweep.storage import HEARTBEAT_KEY, Heartbeat, take_trial, trial_id_of
    from colorize.sweep.study import open_study

    sweep = _sweep_settings(settings, storage=str(tmp_path / "j.log"), heartbeat_s=1)
    study, storage = open_study(sweep)
    orphan = take_trial(study, sweep, storage)  # RUNNING, with the first heartbeat taking gives
    first = study.trials[0].system_attrs[HEARTBEAT_KEY]

    def fail_at(seconds: float) -> list[int]:  # fail_stale_trials, `seconds` after `first`
        return fail_stale_trials(study, storage, sweep.heartbeat_s, now=lambda: first + seconds)

    assert fail_at(2.9) == []  # within the grace period
    Heartbeat(storage, trial_id_of(storage, study, orphan.number), 1,
              now=lambda: first + 2).beat()  # a later heartbeat postpones it
    assert fail_at(4.9) == []
    assert study.trials[0].state == TrialState.RUNNING
    assert fail_at(5.1) == [orphan.number]  # then nobody stamps it
    t = study.trials[0]
    assert t.state == TrialState.FAIL and "no heartbeat for 3s" in t.user_attrs["fail_reason"]
    assert fail_at(60) == []  # nothing left to fail


def test_new_study_starts_with_the_current_params(tmp_path, settings):
    from colorize.sweep.study import enqueue_defaults

    settings = settings.override(sweep={"storage": str(tmp_path / "j.log")},
                                 model={"head": "classification", "decoder_width": 64,
                                        "trunk_depth": 2},
                                 train={"lr": 0.003, "rebalance": 0.25})
    study = make_study(settings.sweep)
    enqueue_defaults(study, settings)
    enqueue_defaults(study, settings)  # only once
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].system_attrs["fixed_params"] == {
        "lr": 0.003, "decoder_width": 64, "head": "classification", "trunk_depth": 2,
        "rebalance": 0.25}
    # Outside the search space (a width the sweep does not try): nothing is enqueued.
    other = settings.override(sweep={"storage": str(tmp_path / "k.log")},
                              model={"decoder_width": 48})
    study = make_study(other.sweep)
    enqueue_defaults(study, other)
    assert study.get_trials(states=(TrialState.WAITING,)) == []


def test_a_database_that_does_not_answer_is_one_line_without_the_password():
    from colorize.errors import UserError
    from colorize.sweep.storage import open_storage

    start = time.monotonic()
    with pytest.raises(UserError) as e:
        open_storage("postgresql://u:secret@127.0.0.1:1/optuna", 60)
    assert time.monotonic() - start < 20  # refused at once, not retried for minutes
    message = str(e.value)
    assert message.startswith("sweep.storage postgresql://u:***@127.0.0.1:1/optuna: cannot "
                              "connect (") and "secret" not in message and "\n" not in message
