"""Sharing with a team, with real git and DVC on temporary repositories (tiny real photos,
2 epochs): Alice runs the pipeline and pushes to a shared folder (the DVC remote, standing for a
NAS) and a bare git repository; Bob clones, pulls and is up to date at once; Bob queues two
experiments side by side, and one travels back to Alice with `dvc exp push` / `dvc exp pull`.
These are the README's "Sharing with a team" commands, run as written (paths aside).

The module-scoped repositories are shared, so the tests run in file order: Bob's MLflow link is
checked before his queued experiments create his store, and `dvc exp apply` comes last for him.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import mlflow
import pytest
import yaml

from conftest import BIN, PHOTOS, copy_repo, run

pytestmark = pytest.mark.slow

DVC = BIN / "dvc"
COLORIZE = BIN / "colorize"
# What a colleague needs: every cached output of dvc.yaml (the rest travels in git).
PUSHED = ("data/raw/folder", "data/interim/manifest.csv", "data/interim/rejected.csv",
          "data/processed", "data/prior/ab_prior.npy", "models/model.pt")
EXPERIMENTS = {"lr-low": "0.001", "lr-high": "0.004"}
UP_TO_DATE = "Data and pipelines are up to date."


@dataclass
class Team:
    base: Path
    alice: Path
    origin: Path  # bare git repository
    nas: Path  # the DVC remote: a shared folder
    env: dict


@dataclass
class Clone:
    root: Path
    pull: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def team(built_repo, tmp_path_factory) -> Team:
    """Alice: `dvc repro` (a copy of the built repository), a default remote, everything
    committed and pushed (git and DVC)."""
    base = tmp_path_factory.mktemp("team")
    origin, nas = base / "origin.git", base / "nas"
    alice, env = copy_repo(built_repo, base / "alice")
    run([DVC, "remote", "add", "-d", "nas", nas], alice, env)
    run(["git", "init", "-q", "--bare", origin], base, env)
    run(["git", "remote", "add", "origin", origin], alice, env)
    run(["git", "add", "-A"], alice, env)
    run(["git", "commit", "-qm", "pipeline, results and the team's remote"], alice, env)
    run(["git", "push", "-q", "-u", "origin", "HEAD"], alice, env)
    run([DVC, "push"], alice, env)
    return Team(base, alice, origin, nas, env)


@pytest.fixture(scope="module")
def bob(team) -> Clone:
    """The colleague: `git clone` and `dvc pull`, nothing else (the remote is in .dvc/config)."""
    root = team.base / "bob"
    run(["git", "clone", "-q", team.origin, root], team.base, team.env)
    return Clone(root, run([DVC, "pull"], root, team.env))


@pytest.fixture(scope="module")
def queued(team, bob) -> str:
    """Bob queues two experiments and runs them side by side; returns `dvc queue status`.
    Bob has no MLflow store yet, so both jobs create it at the same moment."""
    env = team.env
    for name, lr in EXPERIMENTS.items():
        run([DVC, "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}"], bob.root, env)
    # Not captured: the queue's daemon inherits the command's pipes, and a worker that lingers
    # after the queue is empty would keep a captured run() waiting for their end.
    subprocess.run([DVC, "queue", "start", "-j", "2"], cwd=bob.root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    deadline = time.monotonic() + 900
    while True:
        status = run([DVC, "queue", "status"], bob.root, env).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        if time.monotonic() > deadline:
            run([DVC, "queue", "kill", *EXPERIMENTS], bob.root, env, check=False)
            pytest.fail(f"queued experiments still running after 15 min:\n{status}")
        time.sleep(2)
    # The queue is empty: stop its workers (one may otherwise idle on after the run).
    subprocess.run([DVC, "queue", "stop", "--kill"], cwd=bob.root, env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    for name in EXPERIMENTS:
        if not re.search(rf"{name}\s.*Success", status):
            logs = run([DVC, "queue", "logs", name], bob.root, env, check=False)
            pytest.fail(f"{name} did not succeed:\n{status}\n{logs.stdout[-4000:]}")
    return status


def _lock_outs(root: Path, env: dict) -> dict[str, str]:
    """Output path -> md5 in the committed dvc.lock (the workspace may hold an applied exp)."""
    lock = yaml.safe_load(run(["git", "show", "HEAD:dvc.lock"], root, env).stdout)
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}


def _object(md5: str) -> Path:
    return Path("files/md5") / md5[:2] / md5[2:]


def _objects(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in (folder / "files/md5").rglob("*") if p.is_file()}


def _runs(root: Path) -> dict[str, mlflow.entities.Run]:
    """The runs of the repository's own store, by run name."""
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("colorize")
    return {r.info.run_name: r for r in mlflow.MlflowClient().search_runs(
        [experiment.experiment_id])}


def _exp_ref(root: Path, env: dict, name: str) -> str:
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).stdout
    return next(r for r in refs.split() if r.endswith(f"/{name}"))


def test_push_uploads_every_cached_output_and_nothing_else(team):
    outs = _lock_outs(team.alice, team.env)
    expected = set()
    for path in PUSHED:
        md5 = outs[path]
        expected.add(_object(md5))
        if md5.endswith(".dir"):  # a directory: its listing and every file in it
            listing = json.loads((team.alice / ".dvc/cache" / _object(md5)).read_text())
            expected |= {_object(entry["md5"]) for entry in listing}
    assert _objects(team.nas) == expected
    assert not (team.nas / "runs").exists()  # the run cache only with --run-cache
    # What is not pushed travels in git (cache: false outputs, dvc.lock) or stays local.
    tracked = run(["git", "ls-files"], team.alice, team.env).stdout.split()
    assert {"dvc.lock", "models/run.json", "metrics/evaluate.json", ".dvc/config"} <= set(tracked)
    local = ("mlflow.db", "mlartifacts/", "models/checkpoints/", "models/model.pt", "data/raw/",
             "data/processed/", ".dvc/config.local", ".mlflow.db.")
    assert not [p for p in tracked if p.startswith(local)]


def test_colleague_pulls_and_is_up_to_date_without_training(bob, team):
    root, env = bob.root, team.env
    assert bob.pull.returncode == 0
    added = {line.split()[1].rstrip("/") for line in bob.pull.stdout.splitlines()
             if line.startswith("A ")}
    assert added == set(PUSHED)
    assert run([DVC, "status"], root, env).stdout.strip() == UP_TO_DATE
    repro = run([DVC, "repro"], root, env).stdout
    assert UP_TO_DATE in repro and "Running stage" not in repro
    out = run([COLORIZE, "predict", f"{PHOTOS}/p00.jpg", "--out", "o"], root, env)
    assert f"model: {root / 'models/model.pt'} (" in out.stdout
    assert cv2.imread(str(root / "o/p00.png")).shape == (40, 40, 3)
    assert not (root / "models/checkpoints").exists() and not (root / "mlflow.db").exists()
    # Pulling changed nothing that git tracks.
    assert run(["git", "status", "--porcelain"], root, env).stdout.split() == ["??", "o/"]


def test_mlflow_link_needs_a_shared_tracking_store(bob, team):
    root, env = bob.root, team.env
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    assert run_id == json.loads((team.alice / "models/run.json").read_text())["run_id"]
    args = [COLORIZE, "predict", f"{PHOTOS}/p01.png", "--out", "o-run", "--model",
            f"runs:/{run_id}"]
    alone = run(args, root, env, check=False)
    assert alone.returncode == 2
    assert "no MLflow store" in alone.stderr and "MLFLOW_TRACKING_URI" in alone.stderr
    # A store both can reach (here Alice's, standing for a tracking server) resolves it.
    shared = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{team.alice / 'mlflow.db'}"}
    out = run(args, root, shared)
    assert f"run {run_id[:8]}" in out.stdout and (root / "o-run/p01.png").is_file()
    assert not (root / "mlflow.db").exists()


def test_queued_experiments_are_own_runs_in_the_project_store(team, bob, queued):
    root = bob.root
    runs = _runs(root)  # Bob's repository's mlflow.db, not one in DVC's temporary workspace
    assert set(runs) == set(EXPERIMENTS)
    assert len({r.info.run_id for r in runs.values()}) == 2
    for name, lr in EXPERIMENTS.items():
        r = runs[name]
        assert r.data.tags["dvc_experiment"] == name and r.data.params["train.lr"] == lr
        assert "eval_model_ciede2000" in r.data.metrics
        assert r.info.artifact_uri.startswith((root / "mlartifacts").as_uri())
    assert [p.parent for p in root.rglob("mlflow.db")] == [root]
    # Checkpoints were written in each experiment's own workspace, never in the project's.
    assert not (root / "models/checkpoints").exists()
    # The registry: one version per experiment, and no alias moved (none was ever set here;
    # a workspace alias would have failed both evaluations: no workspace version exists).
    client = mlflow.MlflowClient()
    for name in EXPERIMENTS:
        versions = client.search_model_versions(f"name = 'colorizer' AND tag.pipeline = '{name}'")
        assert [v.run_id for v in versions] == [runs[name].info.run_id]
    assert client.get_registered_model("colorizer").aliases == {}
    logs = run([DVC, "queue", "logs", "lr-low"], root, team.env).stdout
    assert "Reproducing experiment 'lr-low'" in logs and "Running stage 'train'" in logs


def test_exp_show_lists_both_with_their_metrics(team, bob, queued):
    root = bob.root
    table = run([DVC, "exp", "show"], root, team.env).stdout
    assert all(f"[{name}]" in table for name in EXPERIMENTS)
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(
        run([DVC, "exp", "show", "--csv"], root, team.env).stdout)) if r["Experiment"]}
    assert set(rows) == set(EXPERIMENTS)
    runs = _runs(root)
    for name, lr in EXPERIMENTS.items():
        row = rows[name]
        # The headline metrics (metrics/evaluate.json: the test split) beside the params.
        assert row["train.lr"] == lr and row["split"] == "test"
        assert float(row["ciede2000"]) == pytest.approx(
            runs[name].data.metrics["eval_model_ciede2000"], abs=1e-4)
        trained = json.loads(run(["git", "show", f"{_exp_ref(root, team.env, name)}:"
                                  "metrics/train.json"], root, team.env).stdout)
        assert trained["resumed_from_epoch"] == 0


def test_exp_push_and_pull_carry_an_experiment_to_another_clone(team, bob, queued):
    alice, env = team.alice, team.env
    run([DVC, "exp", "push", "origin", "lr-high"], bob.root, env)
    run([DVC, "exp", "pull", "origin", "lr-high"], alice, env)
    run([DVC, "exp", "apply", "lr-high"], alice, env)
    pushed_lock = run(["git", "show", f"{_exp_ref(bob.root, env, 'lr-high')}:dvc.lock"],
                      bob.root, env).stdout
    assert (alice / "dvc.lock").read_text() == pushed_lock
    assert yaml.safe_load((alice / "params.yaml").read_text())["train"]["lr"] == 0.004
    # The model came through the DVC remote (exp push uploads the experiment's outputs).
    assert run([DVC, "status"], alice, env).stdout.strip() == UP_TO_DATE
    # Its MLflow run is in Bob's local store only: models/run.json names a run Alice lacks.
    run_id = json.loads((alice / "models/run.json").read_text())["run_id"]
    assert run_id == _runs(bob.root)["lr-high"].info.run_id
    assert run_id not in {r.info.run_id for r in _runs(alice).values()}


def test_exp_apply_and_branch_bring_one_back(team, bob, queued):
    root, env = bob.root, team.env
    run([DVC, "exp", "apply", "lr-low"], root, env)
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["lr"] == 0.001
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    assert run_id == _runs(root)["lr-low"].info.run_id
    assert run([DVC, "status"], root, env).stdout.strip() == UP_TO_DATE
    run([DVC, "exp", "branch", "lr-low", "lr-low-branch"], root, env)
    params = run(["git", "show", "lr-low-branch:params.yaml"], root, env).stdout
    assert yaml.safe_load(params)["train"]["lr"] == 0.001


WRITER = """
import sys, time
from pathlib import Path
import mlflow
from colorize.track import mlflow_run
me, other = sys.argv[1:]
Path(me).touch()
deadline = time.monotonic() + 300
while not Path(other).exists() and time.monotonic() < deadline:
    time.sleep(0.005)
mlflow_run.setup("colorize")
with mlflow.start_run(run_name=me):
    for step in range(40):
        mlflow.log_metric("m", step, step=step)
"""


def test_two_processes_create_and_write_the_store_at_once(tmp_path, team):
    """What two queued experiments do in a fresh clone, started at the same instant: without
    the set-up lock one of them failed in MLflow's schema migration."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    env = {k: v for k, v in team.env.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, me, other], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for me, other in (("a", "b"), ("b", "a"))]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    runs = _runs(tmp_path)
    assert set(runs) == {"a", "b"}
    assert len(mlflow.MlflowClient().get_metric_history(runs["a"].info.run_id, "m")) == 40
    assert (tmp_path / "mlflow.db").is_file()
