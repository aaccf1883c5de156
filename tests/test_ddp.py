"""Data parallel training and data loading: real torchrun processes (gloo on the CPU), a real kill
and resume, real DataLoader worker processes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from colorize.preprocess.store import LabStore, write_index, write_shard
from colorize.train.data import EpochSampler, LabDataset, train_transform
from conftest import BIN, copy_repo, photo_tiles, run, set_params


def test_ranks_split_each_global_batch_exactly():
    """The union of W ranks' k-th batches of B/W images is one process's k-th batch of B."""
    n, batch, world = 50, 8, 2
    one = EpochSampler(n, seed=3)
    ranks = [EpochSampler(n, seed=3, rank=r, world=world) for r in range(world)]
    for s in (one, *ranks):
        s.set_epoch(4)
    single = [i for _, i in one]
    per_rank = [[i for _, i in s] for s in ranks]
    for k in range(n // batch):
        union = sorted(i for r in per_rank for i in r[k * batch // world:(k + 1) * batch // world])
        assert union == sorted(single[k * batch:(k + 1) * batch])
    assert {e for e, _ in one} == {4}


@pytest.fixture
def same_photo_store(tmp_path):
    """A store of 8 copies of one photo: any difference between items is augmentation alone."""
    from colorize import lab

    rgb = photo_tiles(1, 48)[0]
    one = lab.rgb_to_lab(rgb).transpose(2, 0, 1).astype(lab.STORE_DTYPE)
    (tmp_path / "s").mkdir()
    write_shard(tmp_path / "s" / "shard-00000-x.npy", np.stack([one] * 8))
    write_index(tmp_path / "s", 48, [{"file": "shard-00000-x.npy", "count": 8,
                                      "ids": [str(i) for i in range(8)], "names": []}])
    return LabStore(tmp_path / "s")


def _crops(store, workers: int, epoch: int = 1) -> list[np.ndarray]:
    sampler = EpochSampler(len(store), seed=0)
    sampler.set_epoch(epoch)
    loader = DataLoader(LabDataset(store, train_transform(32, 0.3), seed=0), batch_size=1,
                        sampler=sampler, num_workers=workers)
    return [ab.numpy() for _, ab, _ in loader]


def test_workers_draw_their_own_crops_and_a_rerun_repeats_them(same_photo_store):
    crops = _crops(same_photo_store, workers=2)
    distinct = {c.tobytes() for c in crops}
    assert len(distinct) == 8  # each worker, each item: its own crop of the same photo
    again = _crops(same_photo_store, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(crops, again, strict=True))
    # ... and they do not depend on the number of workers,
    single = _crops(same_photo_store, workers=0)
    assert all(np.array_equal(a, b) for a, b in zip(crops, single, strict=True))
    # ... but change with the epoch.
    assert not np.array_equal(_crops(same_photo_store, workers=0, epoch=2)[0], single[0])


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory):
    """The built repository's data (80 photos: 60 train, 20 val) and three params files."""
    root, env = copy_repo(built_repo, tmp_path_factory.mktemp("ddp") / "repo")
    train = {"batch_size": 16, "epochs": 4, "amp": "off"}
    set_params(root, "params-1.yaml", train=train)
    set_params(root, "params-2.yaml", train={**train, "nproc": 2})
    set_params(root, "params-3.yaml", train={**train, "nproc": 2, "epochs": 3})
    _repeat_shards(root / "data/processed", root / "data-long", 12)
    return root, env


def _repeat_shards(data: Path, out: Path, times: int) -> None:
    """Stores that name each shard of `data` `times` times: epochs `times` as long, so that a
    kill after the first one lands in the middle of the run, however fast the machine."""
    for split in ("train", "val"):
        index = json.loads((data / split / "index.json").read_text())
        shards = [{**s, "file": os.path.relpath(data / split / s["file"], out / split),
                   "ids": [f"{i}-{k}" for i in s["ids"]]}
                  for k in range(times if split == "train" else 1) for s in index["shards"]]
        (out / split).mkdir(parents=True)
        write_index(out / split, index["size"], shards)


def _train(root, env, name, params, data="data/processed", **popen):
    args = [BIN / "colorize", "--params", params, "train", "--data", data, "--model", f"{name}.pt",
            "--run-file", f"{name}.json", "--metrics", f"{name}-metrics.json", "--history",
            f"{name}.csv", "--checkpoints", f"ck-{name}"]
    if popen:
        return subprocess.Popen([str(a) for a in args], cwd=root, env=env, **popen)
    return run(args, root, env)


def _kill_all(marker: str) -> None:
    """SIGKILL every process whose command line mentions `marker` (torchrun starts its ranks
    in process groups of their own), as a crash of the machine would."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # gone meanwhile


def _history(path):
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return np.array([[float(x) for x in r[1:]] for r in rows])


@pytest.mark.slow
def test_two_processes_give_the_one_process_loss_curve_and_one_run(repo):
    import mlflow

    root, env = repo
    _train(root, env, "one", "params-1.yaml")
    out = _train(root, env, "two", "params-2.yaml")
    assert "torch.distributed.run --standalone --nproc_per_node=2" in out.stdout
    assert "2 processes" in out.stdout
    one, two = _history(root / "one.csv"), _history(root / "two.csv")
    # Same global batches; BatchNorm statistics differ (per rank: 8 images, not 16; CPU has
    # no SyncBatchNorm), so the curves agree within a tolerance measured here: training loss
    # within 5% at every epoch (measured <= 3%), final validation loss within 10% (3%).
    assert np.all(np.abs(two[:, 0] - one[:, 0]) <= 0.05 * one[:, 0]), (one, two)
    assert abs(two[-1, 1] - one[-1, 1]) <= 0.10 * one[-1, 1], (one, two)
    # Rank 0 alone wrote the outputs and one MLflow run, with each epoch logged once.
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "two.json").read_text())["run_id"]
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).data.params["train.nproc"] == "2"
    assert [m.step for m in client.get_metric_history(run_id, "training/val_loss")] == [1, 2, 3, 4]
    two_process_runs = client.search_runs([client.get_run(run_id).info.experiment_id],
                                          filter_string="params.`train.nproc` = '2'")
    assert [r.info.run_id for r in two_process_runs] == [run_id]  # rank 1 opened none


@pytest.mark.slow
def test_a_ddp_run_killed_after_an_epoch_resumes(repo):
    """Killed (SIGKILL, every process) as soon as epoch 1 of 3 is checkpointed, the rerun
    resumes there, in the same MLflow run."""
    from colorize.model.file import read_state

    root, env = repo
    proc = _train(root, env, "cut", "params-3.yaml", "data-long", start_new_session=True,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while True:
        last = list((root / "ck-cut").glob("*/last.pt"))
        if last and len(read_state(last[0])["history"]) >= 1:
            break
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    _kill_all("params-3.yaml")  # the launcher, torchrun and both ranks, mid-run
    proc.wait()
    state = read_state(last[0])  # what the last complete checkpoint holds
    done, run_id = len(state["history"]), state["run_id"]
    assert done < 3 and run_id
    out = _train(root, env, "cut", "params-3.yaml", "data-long")
    assert f"after epoch {done}" in out.stdout and f"epochs {done + 1}..3" in out.stdout
    assert len(_history(root / "cut.csv")) == 3
    assert json.loads((root / "cut.json").read_text())["run_id"] == run_id
    assert torch.load(root / "cut.pt", weights_only=True)["meta"]["run_id"] == run_id


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_run_stopped_by_a_signal_ends_killed_in_mlflow_and_keeps_its_checkpoint(repo, signum):
    """`kill` (SIGTERM) or a closed terminal (SIGHUP) mid-run: the MLflow run says KILLED, not
    RUNNING forever, the finished epochs' checkpoint stays, and the exit code is 128 + signal."""
    import mlflow

    from colorize.model.file import read_state

    root, env = repo
    name = f"stop-{signum.name}"
    proc = _train(root, env, name, "params-1.yaml", "data-long", stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while True:
        last = list((root / f"ck-{name}").glob("*/last.pt"))
        if last and len(read_state(last[0])["history"]) >= 1:
            break
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "interrupted; finished work is kept" in err and "Traceback" not in err
    state = read_state(last[0])
    assert 1 <= len(state["history"]) < 4
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    assert mlflow.MlflowClient().get_run(state["run_id"]).info.status == "KILLED"
