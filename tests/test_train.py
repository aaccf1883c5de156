"""Training on tiny real data: best-checkpoint choice and exact resume after an interruption."""

import numpy as np
import pytest
import torch

from colorize.data.prepare import prepare
from colorize.model.bins import load_prior
from colorize.preprocess.prior import write_prior
from colorize.preprocess.run import preprocess
from colorize.train import loop
from colorize.train.loop import DivergedError


class Interrupted(Exception):
    pass


@pytest.fixture
def tiny(settings, photo_folder, tmp_path):
    settings = settings.override(
        data={"source": "folder", "path": str(photo_folder), "val_fraction": 0.3,
              "min_size": 16},
        preprocess={"size": 32, "shard_size": 8, "workers": 1},
        train={"epochs": 3, "batch_size": 4, "crop": 32, "lr": 1e-3})
    prepare(settings.data, tmp_path / "interim", tmp_path / "data.json")
    preprocess(settings.data, settings.preprocess, tmp_path / "interim/manifest.csv",
               tmp_path / "processed")
    write_prior(tmp_path / "processed/train", tmp_path / "prior.npy", tmp_path / "prior.png")
    return settings, tmp_path / "processed"


def fit(settings, data, ckpt, **kw):
    """The loop with the split's prior, which the default (classification) head needs."""
    return loop.fit(settings, data, ckpt, load_prior(data.parent / "prior.npy"), **kw)


def _losses(history):
    return [(e.epoch, e.train_loss, e.val_loss) for e in history]


def test_best_checkpoint_has_the_lowest_validation_loss(tiny, tmp_path):
    settings, data = tiny
    res = fit(settings, data, tmp_path / "ckpt")
    vals = [e.val_loss for e in res.history]
    assert len(vals) == 3 and res.best_val_loss == min(vals)
    assert res.best_epoch == vals.index(min(vals)) + 1


def test_interrupted_run_resumes_from_its_checkpoint_exactly(tiny, tmp_path):
    settings, data = tiny
    full = fit(settings, data, tmp_path / "full")

    def stop_after_2(epoch, model):
        if epoch.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(settings, data, tmp_path / "cut", on_epoch=stop_after_2, extra={"run_id": "abc"})
    resumed = fit(settings, data, tmp_path / "cut")
    assert resumed.resumed_from == 2
    assert resumed.extra == {"run_id": "abc"}
    assert _losses(resumed.history) == _losses(full.history)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
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
