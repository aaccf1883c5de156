"""Sweeps on many machines and a team tracking server, against REAL servers on loopback.

A PostgreSQL server (pgserver's binaries, on 127.0.0.1 with a password, as on a network) holds
Optuna studies; an `mlflow server` (its own SQLite backend, proxied artifacts) is the tracking
URI. Tests: the budget lock under processes started at the same moment, Optuna's RDB heartbeat,
`colorize sweep` with two workers and as two separate commands, and a whole `dvc repro` plus
`colorize predict` against the server with nothing tracked in the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from colorize.sweep.storage import (
    Heartbeat,
    fail_stale_trials,
    open_storage,
    redact,
    sqlalchemy_url,
    study_lock,
    take_trial,
    trial_id_of,
)
from colorize.sweep.study import make_study, open_study
from conftest import BIN, copy_repo, photo_tiles, run, set_params, write_rgb

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-pw"  # the sweep's database role; must never reach MLflow or the output
FINISHED = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_storage_urls_name_a_driver_and_hide_the_password():
    url = "postgresql://me:pw@db-host:5433/optuna"
    assert sqlalchemy_url(url) == "postgresql+psycopg2://me:pw@db-host:5433/optuna"
    assert sqlalchemy_url("mysql+pymysql://me:pw@h/db") == "mysql+pymysql://me:pw@h/db"
    assert redact(url) == "postgresql://me:***@db-host:5433/optuna"
    assert redact("sweeps/journal.log") == "sweeps/journal.log"


# --- PostgreSQL ----------------------------------------------------------------------------


@dataclass
class Postgres:
    port: int
    admin_password: str
    count: int = 0

    def create_database(self) -> str:
        """A fresh database owned by the sweep's role; returns its URL."""
        import psycopg2

        self.count += 1
        name = f"optuna_{self.count}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                password=self.admin_password, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} OWNER colorize")
        conn.close()
        return f"postgresql://colorize:{PASSWORD}@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres():
    """PostgreSQL 16 from the pgserver wheel, in a temporary folder, listening on 127.0.0.1 with
    password (scram) authentication. As root (containers, CI) the server runs as pgserver's own
    system user, since postgres refuses root; that is what pgserver itself does."""
    import warnings

    import psycopg2

    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (unused here)
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH as pg_bin

    folder = Path(tempfile.mkdtemp(prefix="colorize-pg-"))
    data, log, pwfile = folder / "data", folder / "server.log", folder / "pwfile"
    admin = "admin-pw"
    pwfile.write_text(admin + "\n")
    as_user: dict = {}
    if os.geteuid() == 0:
        import pwd

        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        ensure_prefix_permissions(pg_bin)
        entry = pwd.getpwnam("pgserver")
        for path in (folder, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        as_user = {"user": "pgserver"}
    port = free_port()
    try:
        for cmd in ([pg_bin / "initdb", "-D", data, "-U", "postgres", "-E", "utf8",
                     "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                    [pg_bin / "pg_ctl", "-D", data, "-w", "-t", "60", "-l", log,
                     "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"]):
            subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True,
                           timeout=120, **as_user)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or (log.read_text()[-500:] if log.exists() else "")
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL (pgserver's binaries) cannot start on this platform: {e} "
                    f"{detail}")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=admin,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE colorize LOGIN PASSWORD '{PASSWORD}'")
        conn.close()
        yield Postgres(port, admin)
    finally:
        subprocess.run([str(pg_bin / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, **as_user)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres) -> str:
    return postgres.create_database()


# --- MLflow server -------------------------------------------------------------------------


@dataclass
class Tracking:
    url: str
    artifacts: Path

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def experiment_id(self) -> str:
        return self.client().get_experiment_by_name("colorize").experiment_id


@pytest.fixture(scope="session")
def tracking(tmp_path_factory):
    """`mlflow server` on 127.0.0.1: its own SQLite backend, artifacts uploaded through it
    (--serve-artifacts) into its own folder. Ready when /health answers."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'backend.db'}",
         "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n"
                                     f"{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield Tracking(url, folder / "artifacts")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


# --- a pipeline repository ---------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory, tracking):
    """The built repository's data and prior (what a sweep needs), without its local MLflow
    store: MLflow on the server."""
    root, env = copy_repo(built_repo, tmp_path_factory.mktemp("servers") / "repo")
    shutil.rmtree(root / "mlartifacts")
    (root / "mlflow.db").unlink()
    set_params(root, model={"decoder_width": 16},  # inside the search space: defaults enqueued
               sweep={"epochs": 1, "decoder_widths": [16, 32], "pruner_warmup_epochs": 0})
    env.update(MLFLOW_TRACKING_URI=tracking.url, OMP_NUM_THREADS="1")
    return root, env


def _nested(tracking: Tracking, parent: str) -> list:
    return tracking.client().search_runs(
        [tracking.experiment_id()], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def _parents(tracking: Tracking, study: str) -> list:
    runs = tracking.client().search_runs([tracking.experiment_id()],
                                         filter_string=f"tags.optuna_study = '{study}'")
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _assert_no_local_store(root: Path) -> None:
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    assert not list(root.rglob("mlflow.db")) and not (root / "mlruns").exists()


def _load(url: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(url, 30))


# --- the budget lock and the heartbeat, without training ---------------------------------


# A worker that takes one trial per line on stdin (and tells it at once), answering 1 or 0.
# A separate interpreter importing only the storage module: it starts in a second.
TAKER = """
import sys
import optuna
from colorize import config
from colorize.sweep.storage import open_storage, take_trial

url, name, params = sys.argv[1:]
sweep = config.load(params).override(sweep={"storage": url, "study": name, "n_trials": 6}).sweep
study = optuna.load_study(study_name=name, storage=open_storage(url, sweep.heartbeat_s))
print("ready", flush=True)
for _ in sys.stdin:
    trial = take_trial(study, sweep)
    if trial is not None:
        study.tell(trial, 0.0)
    print(int(trial is not None), flush=True)
"""


def test_budget_lock_holds_with_workers_asking_at_once(pg_url, settings):
    """4 worker processes ask at the same moment, round after round; a 6-trial budget ends with
    exactly 6 trials (without the lock, all 4 see the same count: 8 after two rounds)."""
    from conftest import REPO

    sweep = settings.override(sweep={"storage": pg_url, "study": "lock", "n_trials": 6}).sweep
    make_study(sweep)
    procs = [subprocess.Popen([str(BIN / "python"), "-c", TAKER, pg_url, "lock",
                               str(REPO / "params.yaml")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 4
        taken = [0] * 4
        for _ in range(3):  # all four are released together, then all four answer
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            for i, p in enumerate(procs):
                taken[i] += int(p.stdout.readline())
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(60)
    study = _load(pg_url, "lock")
    assert sum(taken) == 6 and len(study.trials) == 6, taken
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert sorted(t.number for t in study.trials) == list(range(6))


def test_study_lock_excludes_other_sessions(pg_url):
    """The advisory lock is the server's: a second session (here a thread with its own
    connection) waits until the first releases it."""
    import threading

    order: list[str] = []

    def second() -> None:
        with study_lock(pg_url, "s"):
            order.append("second")

    with study_lock(pg_url, "s"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1.0)
        order.append("first")
    waiter.join(30)
    assert order == ["first", "second"]


def test_optuna_heartbeat_fails_a_dead_workers_trial_only(pg_url, settings):
    """RDB: the trial whose heartbeat stopped is failed after 3 x heartbeat_s by the next worker
    (with its reason); the trial whose heartbeat goes on stays RUNNING. The beats are Optuna's
    own (trial_heartbeats table), which ask/tell alone would never write."""
    from sqlalchemy import create_engine, text

    sweep = settings.override(sweep={"storage": pg_url, "study": "hb", "n_trials": 5,
                                     "heartbeat_s": 1}).sweep
    study, storage = open_study(sweep)
    start = time.monotonic()
    alive, dead = take_trial(study, sweep, storage), take_trial(study, sweep, storage)
    with Heartbeat(storage, trial_id_of(storage, study, alive.number), 1):
        assert fail_stale_trials(study, storage, sweep.heartbeat_s) == []  # within the grace
        # The database's clock decides: ask until the dead trial is failed, not a fixed sleep.
        while not (failed := fail_stale_trials(study, storage, sweep.heartbeat_s)):
            assert time.monotonic() - start < 30, "the dead trial was never failed"
            time.sleep(0.2)
        waited = time.monotonic() - start
    assert failed == [dead.number] and waited > 3 * sweep.heartbeat_s
    engine = create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as c:
        beats = c.execute(text("SELECT count(*) FROM trial_heartbeats")).scalar()
    engine.dispose()
    assert beats == 2
    states = {t.number: t for t in make_study(sweep).trials}
    assert states[alive.number].state == TrialState.RUNNING
    assert states[dead.number].state == TrialState.FAIL
    assert "no heartbeat" in states[dead.number].user_attrs["fail_reason"]
    assert fail_stale_trials(study, storage, sweep.heartbeat_s) == []  # nothing left to fail


# --- colorize sweep on PostgreSQL, MLflow on the server ---------------------------------


@pytest.mark.parametrize("mode", ["one command, 2 workers", "two commands at once"])
def test_sweep_workers_share_a_postgres_study(repo, tracking, postgres, mode):
    """A fresh database each time (the two commands also race to create Optuna's tables, the
    study, its MLflow parent run and the enqueued defaults); 3 trials for 2 workers."""
    root, env = repo
    url, budget = postgres.create_database(), 3
    study_name = "pg-" + mode.split()[0]
    args = [BIN / "colorize", "sweep", "--storage", url, "--study", study_name,
            "--n-trials", str(budget)]
    start = time.perf_counter()
    if mode.startswith("one"):
        outputs = [run([*args, "--workers", "2"], root, env).stdout]
    else:
        procs = [subprocess.Popen([str(a) for a in [*args, "--workers", "1"]], cwd=root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, f"{out}\n{err}"
        outputs = [out for out, _ in results]
    seconds = time.perf_counter() - start
    study = _load(url, study_name)
    assert len(study.trials) == budget and {t.state for t in study.trials} <= FINISHED
    # Each trial was run by exactly one process, and the defaults were enqueued once.
    ran = [line for out in outputs for line in out.splitlines()
           if re.match(r"trial \d+ \(", line)]
    assert len(ran) == budget, outputs
    assert sum(t.user_attrs.get("defaults", False) for t in study.trials) == 1
    # One parent run on the server, with one nested run per trial.
    parents = _parents(tracking, study_name)
    assert [p.info.run_id for p in parents] == [study.user_attrs["mlflow_parent_run_id"]]
    children = _nested(tracking, parents[0].info.run_id)
    assert len(children) == budget
    assert {c.data.tags["optuna_state"] for c in children} <= {"COMPLETE", "PRUNED", "FAIL"}
    assert sorted(c.info.run_id for c in children) == sorted(
        t.user_attrs["mlflow_run_id"] for t in study.trials)
    # The database password reaches neither MLflow nor the terminal.
    assert PASSWORD not in json.dumps(parents[0].data.tags)
    assert not any(PASSWORD in out for out in outputs)
    _assert_no_local_store(root)
    print(f"{mode}: {budget} trials in {seconds:.1f}s")


def test_killed_workers_trial_is_failed_and_the_budget_still_met(repo, tracking, postgres):
    """A `colorize sweep` killed in the middle of a trial (as a machine that dies): its trial
    has Optuna heartbeats in PostgreSQL; after 3 x heartbeat_s the next command fails it with
    the reason and finishes the budget, with one nested MLflow run per trial."""
    import yaml

    root, env = repo
    url, name = postgres.create_database(), "pg-killed"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sweep"]["heartbeat_s"] = 1
    (root / "params-hb.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    args = [BIN / "colorize", "--params", "params-hb.yaml", "sweep", "--storage", url,
            "--study", name, "--n-trials", "2"]
    doomed = subprocess.Popen([str(a) for a in [*args, "--epochs", "200"]], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _training_with_heartbeat(url, name):
            assert doomed.poll() is None, doomed.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.5)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.communicate()
    _wait_until_stale(url, name, 3 * params["sweep"]["heartbeat_s"])  # past the grace period
    out = run([*args, "--epochs", "1"], root, env).stdout
    assert "trial 0: marked FAIL (its worker stopped)" in out
    study = _load(url, name)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "no heartbeat" in study.trials[0].user_attrs["fail_reason"]
    children = {c.info.run_id: c for c in
                _nested(tracking, study.user_attrs["mlflow_parent_run_id"])}
    assert len(children) == 2
    killed = children[study.trials[0].user_attrs["mlflow_run_id"]]
    assert killed.info.status == "FAILED" and killed.data.tags["optuna_state"] == "FAIL"
    assert "no heartbeat" in killed.data.tags["reason"]


def _training_with_heartbeat(url: str, study: str) -> bool:
    """A trial is RUNNING, has Optuna heartbeats and its MLflow run: it is training."""
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as c:
            return bool(c.execute(text(
                "SELECT count(*) FROM trials t JOIN trial_heartbeats h USING (trial_id) "
                "JOIN studies s USING (study_id) JOIN trial_user_attributes a "
                "USING (trial_id) WHERE t.state = 'RUNNING' AND s.study_name = :n "
                "AND a.key = 'mlflow_run_id'"), {"n": study}).scalar())
    except Exception:  # the tables do not exist yet
        return False
    finally:
        engine.dispose()


def _wait_until_stale(url: str, study: str, grace_s: int) -> None:
    """Until the study's RUNNING trials' last Optuna heartbeats are over `grace_s` old by the
    database's clock (Optuna's own test; no fixed sleep)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlalchemy_url(url))
    deadline = time.monotonic() + 60
    try:
        while True:
            with engine.connect() as c:  # a new transaction each time: a new now()
                stale = c.execute(text(
                    "SELECT bool_and(LOCALTIMESTAMP - h.heartbeat > make_interval(secs => :g)) "
                    "FROM trials t JOIN trial_heartbeats h USING (trial_id) JOIN studies s "
                    "USING (study_id) WHERE t.state = 'RUNNING' AND s.study_name = :n"),
                    {"n": study, "g": grace_s}).scalar()
            if stale:
                return
            assert time.monotonic() < deadline, "the killed worker's trial never went stale"
            time.sleep(0.2)
    finally:
        engine.dispose()


# --- the team tracking server ------------------------------------------------------------


def test_sweep_logs_parent_and_trials_to_the_server(repo, tracking):
    root, env = repo
    run([BIN / "colorize", "sweep", "--n-trials", "2", "--study", "on-server"], root, env)
    parents = _parents(tracking, "on-server")
    assert len(parents) == 1
    parent = parents[0]
    assert "trials" in parent.data.metrics
    children = _nested(tracking, parent.info.run_id)
    assert len(children) == 2
    for c in children:
        assert "training/val_loss" in c.data.metrics and "train.lr" in c.data.params
    # The study's plots went through the server into its artifact folder.
    plots = {a.path for a in tracking.client().list_artifacts(parent.info.run_id, "sweep")}
    assert "sweep/optimization_history.png" in plots
    assert list(tracking.artifacts.rglob("optimization_history.png"))
    _assert_no_local_store(root)


def test_repro_and_predict_use_the_tracking_server(repo, tracking, tmp_path):
    root, env = repo
    run([BIN / "dvc", "repro"], root, env)
    info = json.loads((root / "models/run.json").read_text())
    assert info["tracking"] == tracking.url
    client = tracking.client()
    r = client.get_run(info["run_id"])
    assert r.data.params["train.epochs"] == "2"
    history = client.get_metric_history(info["run_id"], "training/val_loss")
    assert [m.step for m in history] == [1, 2]
    assert "eval_model_ciede2000" in r.data.metrics and "eval_gray_ciede2000" in r.data.metrics
    samples = {a.path for a in client.list_artifacts(info["run_id"], "samples")}
    assert {"samples/epoch_001.png", "samples/epoch_002.png"} <= samples
    assert "evaluation/samples.png" in {
        a.path for a in client.list_artifacts(info["run_id"], "evaluation")}
    # Artifacts are in the server's folder: uploaded through it, not written by the client.
    assert list(tracking.artifacts.rglob("epoch_002.png"))
    logged = client.search_logged_models(
        [r.info.experiment_id], filter_string=f"source_run_id = '{info['run_id']}'")
    assert {m.name for m in logged} >= {"model", "colorizer"}
    version = client.get_model_version_by_alias("colorizer", "workspace")
    assert version.run_id == info["run_id"] and version.tags["pipeline"] == "workspace"
    _assert_no_local_store(root)

    # predict resolves the alias through the server, from a folder outside any repository.
    photo = write_rgb(tmp_path / "in" / "photo.png", photo_tiles(1, 48)[0])
    out = run([BIN / "colorize", "predict", photo, "--out", tmp_path / "out", "--model",
               "models:/colorizer@workspace"], tmp_path, env)
    assert (tmp_path / "out" / "photo.png").is_file()
    assert f"version {version.version}" in out.stdout + out.stderr
    assert not (tmp_path / "mlflow.db").exists()
    _assert_no_local_store(root)
