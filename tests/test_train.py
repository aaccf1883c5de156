"""Training on tiny real data: best-checkpoint choice, exact resume after an interruption, what
happens to checkpoints of finished runs and of other code, and the MLflow run a resumed
training continues (the train stage in-process, with a real MLflow SQLite store)."""

import json

import mlflow
import numpy as np
import pytest
import torch

from colorize.data.prepare import prepare
from colorize.model.bins import load_prior
from colorize.model.file import load_model, read_state
from colorize.preprocess.preprocess import preprocess
from colorize.preprocess.prior import prior as write_prior
from colorize.train import loop
from colorize.train import train as stage
from colorize.train.checkpoint import Checkpoints
from colorize.train.loop import DivergedError


class Interrupted(Exception):
    pass


@pytest.fixture
def tiny(settings, photo_folder, tmp_path):
    settings = settings.override(
        data={"source": "folder", "path": str(photo_folder), "val_fraction": 0.3,
              "test_fraction": 0.2, "min_size": 16},
        preprocess={"size": 32, "shard_size": 8, "workers": 1},
        train={"epochs": 3, "batch_size": 4, "crop": 32, "lr": 1e-3},
        evaluate={"grid_images": 2})
    prepare(settings.data, tmp_path / "interim", tmp_path / "data.json")
    preprocess(settings.data, settings.preprocess, tmp_path / "interim/manifest.csv",
               tmp_path / "processed")
    write_prior(tmp_path / "processed/train", tmp_path / "prior.npy", tmp_path / "prior.png")
    return settings, tmp_path / "processed"


def fit(settings, data, folder, code="code-a", **kw):
    """The loop with the split's prior, which the default (classification) head needs."""
    ckpts = Checkpoints(folder, code, settings.train.epochs, log=lambda _: None)
    return loop.fit(settings, data, ckpts, load_prior(data.parent / "prior.npy"), **kw)


def _losses(history):
    return [(e.epoch, e.train_loss, e.val_loss) for e in history]


def _stop_after(n):
    def on_epoch(epoch, model):
        if epoch.epoch == n:
            raise Interrupted

    return on_epoch


def test_best_checkpoint_has_the_lowest_validation_loss(tiny, tmp_path):
    settings, data = tiny
    res = fit(settings, data, tmp_path / "ckpt")
    vals = [e.val_loss for e in res.history]
    assert len(vals) == 3 and res.best_val_loss == min(vals)
    assert res.best_epoch == vals.index(min(vals)) + 1


def test_interrupted_run_resumes_from_its_checkpoint_exactly(tiny, tmp_path):
    settings, data = tiny
    full = fit(settings, data, tmp_path / "full")
    with pytest.raises(Interrupted):
        fit(settings, data, tmp_path / "cut", on_epoch=_stop_after(2))
    resumed = fit(settings, data, tmp_path / "cut")
    assert resumed.resumed_from == 2
    assert _losses(resumed.history) == _losses(full.history)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # The checkpoint is a usable model file: the network after its last epoch.
    model, size, meta = load_model(tmp_path / "cut" / "last.pt")
    assert size == 32 and meta == {"epochs_done": 3, "checkpoint": True}


def test_a_moving_average_run_resumes_exactly_and_keeps_the_average(tiny, tmp_path):
    settings, data = tiny
    settings = settings.override(train={"ema": 0.9})
    full = fit(settings, data, tmp_path / "full")
    with pytest.raises(Interrupted):
        fit(settings, data, tmp_path / "cut", on_epoch=_stop_after(2))
    resumed = fit(settings, data, tmp_path / "cut")
    assert resumed.resumed_from == 2 and _losses(resumed.history) == _losses(full.history)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    state = read_state(tmp_path / "cut" / "last.pt")
    kept, live = state["ema"]["weights"], state["network"]["state_dict"]
    assert state["ema"]["updates"] == 3 * 2  # three epochs of two steps (8 photos, batch 4)
    assert not torch.equal(kept["head.weight"], live["head.weight"])  # an average, not a copy
    if full.best_epoch == 3:  # the kept model is the average, never the live weights
        assert torch.equal(full.model.state_dict()["head.weight"], kept["head.weight"])


def test_a_scene_loss_run_resumes_exactly_with_its_classifier(tiny, tmp_path):
    settings, data = tiny  # the photos sit in two folders, sub0 and sub1: two scene classes
    settings = settings.override(data={"labels": "folders"}, model={"global_context": True},
                                 train={"scene_loss": 1.0})
    full = fit(settings, data, tmp_path / "full")
    scene = [e.scene_loss for e in full.history]
    assert all(0 < s < 5 for s in scene)  # (that it learns: tests/test_scene.py)
    with pytest.raises(Interrupted):
        fit(settings, data, tmp_path / "cut", on_epoch=_stop_after(2))
    resumed = fit(settings, data, tmp_path / "cut")  # the classifier comes back too
    assert [e.scene_loss for e in resumed.history] == scene
    assert _losses(resumed.history) == _losses(full.history)
    assert read_state(tmp_path / "cut" / "last.pt")["scene"]["classifier.weight"].shape == (
        2, 256)
    assert not full.model.global_context.pool._forward_hooks  # the saved network is plain


def test_the_test_split_never_enters_training(tiny, tmp_path):
    settings, data = tiny
    clean = fit(settings, data, tmp_path / "clean")
    shards = list((data / "test").glob("shard-*.npy"))
    assert shards  # the fixture has a test split
    for shard in shards:  # NaN everywhere: any read of it would show in a loss or a weight
        np.save(shard, np.full_like(np.load(shard), np.nan))
    poisoned = fit(settings, data, tmp_path / "poisoned")
    assert _losses(poisoned.history) == _losses(clean.history)
    for a, b in zip(clean.model.state_dict().values(), poisoned.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_finished_run_is_kept_when_training_again(tiny, tmp_path):
    settings, data = tiny
    short = settings.override(train={"epochs": 1})
    fit(short, data, tmp_path / "ck")
    again = fit(short, data, tmp_path / "ck")
    assert again.resumed_from == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ck-done-")]
    assert len(kept) == 1 and (kept[0] / "last.pt").exists()


def test_a_checkpoint_of_other_code_is_kept_not_resumed(tiny, tmp_path):
    settings, data = tiny
    with pytest.raises(Interrupted):
        fit(settings, data, tmp_path / "ck", code="old", on_epoch=_stop_after(1))
    before = (tmp_path / "ck" / "last.pt").read_bytes()
    messages = []
    ckpts = Checkpoints(tmp_path / "ck", "new", settings.train.epochs, log=messages.append)
    assert ckpts.open() is None
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ck-other-code-")]
    assert len(kept) == 1 and (kept[0] / "last.pt").read_bytes() == before  # untouched
    assert "was written by other code (code old, now new): it is not resumed" in messages[0]
    assert str(kept[0]) in messages[0]


def test_an_epoch_and_a_validation_run_on_their_own(tiny):
    settings, data = tiny
    device = torch.device("cpu")
    loop.seed_everything(0)
    batches = loop.make_data(settings, data, device)
    assert (batches.train_images, batches.val_images, batches.steps) == (8, 3, 2)  # 8 // 4
    parts = loop.build_parts(settings, load_prior(data.parent / "prior.npy"), device,
                             total_steps=3 * batches.steps)
    before = loop.validate(parts, batches.val)
    assert loop.validate(parts, batches.val) == before  # evaluation mode changes nothing
    head = parts.net.head.weight.detach().clone()
    loss, speed, scene = loop.train_epoch(parts, batches, 1, settings, bar_on=False)
    assert np.isfinite(loss) and speed > 0 and scene == 0  # no scene loss by default
    assert not torch.equal(head, parts.net.head.weight)  # it stepped
    assert parts.sched.last_epoch == batches.steps  # one schedule step per optimizer step
    assert loop.validate(parts, batches.val) != before


def test_low_res_epochs_train_half_size_crops_in_four_times_the_batch(tiny):
    settings, data = tiny
    settings = settings.override(train={"low_res_epochs": 1})
    device = torch.device("cpu")
    batches = loop.make_data(settings, data, device)
    assert (batches.steps, batches.low_steps) == (2, 1)  # 8 photos: 2 x 4 at 32 px, 1 x 8 at 16
    parts = loop.build_parts(settings, load_prior(data.parent / "prior.npy"), device,
                             total_steps=5)
    seen = []
    parts.net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    loop.train_epoch(parts, batches, 1, settings, bar_on=False)
    assert seen == [(8, 4, 16, 16)] and parts.sched.last_epoch == 1  # the whole split, once
    seen.clear()
    loop.train_epoch(parts, batches, 2, settings, bar_on=False)
    assert seen == [(4, 4, 32, 32)] * 2 and parts.sched.last_epoch == 3


def test_the_schedule_spans_low_res_and_full_size_steps(tiny, tmp_path):
    settings, data = tiny
    settings = settings.override(train={"low_res_epochs": 1})  # 1 + 2 x 2 = 5 steps
    history = fit(settings, data, tmp_path / "ck").history
    assert np.isfinite([e.train_loss for e in history]).all()
    assert history[-1].lr == pytest.approx(1e-3 / 100)  # the cosine's end after the 5th step


def test_a_nan_loss_stops_training_with_its_reason(tiny, tmp_path):
    settings, data = tiny
    shard = next((data / "train").glob("shard-*.npy"))
    arr = np.load(shard)
    arr[:, 1] = np.nan  # a corrupted store: every a* value is NaN
    np.save(shard, arr)
    with pytest.raises(DivergedError, match="loss is nan at epoch 1, step 1"):
        fit(settings, data, tmp_path / "ck")


def test_learning_rate_warms_up_then_follows_the_cosine_to_a_hundredth():
    assert loop.lr_factor(0, 2000, 300, "cosine") == pytest.approx(1 / 300)
    assert loop.lr_factor(299, 2000, 300, "cosine") == pytest.approx(1.0)
    assert loop.lr_factor(1150, 2000, 300, "cosine") == pytest.approx(0.505)  # half way down
    assert loop.lr_factor(2000, 2000, 300, "cosine") == pytest.approx(0.01)
    assert loop.lr_factor(0, 10, 300, "cosine") == pytest.approx(0.5)  # capped at 10 // 5 steps
    assert loop.lr_factor(5, 10, 300, "constant") == 1.0


# --- the train stage: which MLflow run a (re)started training logs to ----------------------


def _stage(settings, data, tmp_path, name):
    """The train stage in-process, outputs named after `name` -> the MLflow run id."""
    stage.train(settings, data_dir=data, prior_path=data.parent / "prior.npy",
                manifest=data.parent / "interim/manifest.csv", model_path=tmp_path / f"{name}.pt",
                run_file=tmp_path / f"{name}.json", metrics_path=tmp_path / f"{name}-m.json",
                history_path=tmp_path / f"{name}.csv", checkpoints=tmp_path / "ck")
    return json.loads((tmp_path / f"{name}.json").read_text())["run_id"]


def _crash_in_epoch(monkeypatch, n):
    """Validation of epoch n raises, as a crash of the machine in the middle of it would."""
    calls = {"n": 0}
    real = loop.validate

    def validate(parts, loader):
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupted
        return real(parts, loader)

    monkeypatch.setattr(loop, "validate", validate)


def test_reruns_after_a_code_change_keep_each_run_and_its_id(tiny, tmp_path, monkeypatch):
    """DVC retrains under the same settings and data when code changed. The finished run's
    folder keeps its own run id; the new training's crash resumes in its own run; an
    unfinished checkpoint of other code is kept and not resumed."""
    settings, data = tiny
    settings = settings.override(train={"epochs": 2})
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the MLflow store: tmp_path/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(stage, "code_fingerprint", lambda: "code-a")
    first = _stage(settings, data, tmp_path, "first")

    monkeypatch.setattr(stage, "code_fingerprint", lambda: "code-b")  # an edited module
    with monkeypatch.context() as m:
        _crash_in_epoch(m, 2)
        with pytest.raises(Interrupted):
            _stage(settings, data, tmp_path, "second")
    done = [p for p in (tmp_path / "ck").iterdir() if "-done-" in p.name]
    assert len(done) == 1
    key = done[0].name.split("-done-")[0]
    assert read_state(done[0] / "last.pt")["run_id"] == first  # not overwritten
    crashed = read_state(tmp_path / "ck" / key / "last.pt")
    second = crashed["run_id"]
    assert second != first and len(crashed["history"]) == 1 and crashed["code"] == "code-b"

    resumed = _stage(settings, data, tmp_path, "second")  # same code: resumed, same run
    assert resumed == second
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(settings.tracking.experiment).experiment_id
    assert len(client.search_runs([experiment])) == 2
    assert [m.step for m in client.get_metric_history(second, "training/val_loss")] == [1, 2]
    assert json.loads((tmp_path / "second-m.json").read_text())["resumed_from_epoch"] == 1

    # An unfinished checkpoint of other code: kept aside, a new run from scratch.
    monkeypatch.setattr(stage, "code_fingerprint", lambda: "code-c")
    with monkeypatch.context() as m:
        _crash_in_epoch(m, 2)
        with pytest.raises(Interrupted):
            _stage(settings.override(train={"epochs": 3}), data, tmp_path, "third")
    monkeypatch.setattr(stage, "code_fingerprint", lambda: "code-d")
    third = _stage(settings.override(train={"epochs": 3}), data, tmp_path, "third")
    other = [p for p in (tmp_path / "ck").iterdir() if "-other-code-" in p.name]
    assert len(other) == 1
    kept = read_state(other[0] / "last.pt")
    assert kept["code"] == "code-c" and len(kept["history"]) == 1 and kept["run_id"] != third
    assert json.loads((tmp_path / "third-m.json").read_text())["resumed_from_epoch"] == 0
