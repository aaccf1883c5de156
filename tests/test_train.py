"""Training on tiny real data: best-checkpoint choice and exact resume after an interruption."""

import dataclasses

import pytest
import torch

from colorize.config import DataSettings, PreprocessSettings, Settings, TrainSettings
from colorize.data.prepare import prepare
from colorize.preprocess.run import preprocess
from colorize.train.loop import fit


class Interrupted(Exception):
    pass


@pytest.fixture
def tiny(photo_folder, tmp_path):
    data = DataSettings(source="folder", path=str(photo_folder), val_fraction=0.3, min_size=16)
    prepare(data, tmp_path / "interim", tmp_path / "data.json")
    preprocess(data, PreprocessSettings(size=32, shard_size=8), tmp_path / "interim/manifest.csv",
               tmp_path / "processed", workers=1,
               stats_path=tmp_path / "stats.json")
    settings = Settings(data=data, preprocess=PreprocessSettings(size=32),
                        train=TrainSettings(epochs=3, batch_size=4, crop=32, lr=1e-3))
    return settings, tmp_path / "processed"


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
    short = dataclasses.replace(settings, train=dataclasses.replace(settings.train, epochs=1))
    fit(short, data, tmp_path / "ck")
    again = fit(short, data, tmp_path / "ck")
    assert again.resumed_from == 0
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ck-done-")]
    assert len(kept) == 1 and (kept[0] / "last.pt").exists()
