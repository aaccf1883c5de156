import json

import numpy as np
import pytest

from colorize import lab
from colorize.data.prepare import prepare
from colorize.preprocess.preprocess import preprocess
from colorize.preprocess.store import LabStore


def _pre(settings, **values):
    return settings.override(preprocess=values, train={"crop": 8}).preprocess


@pytest.fixture
def prepared(settings, photo_folder, tmp_path):
    data = settings.override(data={"source": "folder", "path": str(photo_folder),
                                   "val_fraction": 0.3, "min_size": 16}).data
    prepare(data, tmp_path / "interim", tmp_path / "data.json")
    return data, tmp_path / "interim" / "manifest.csv"


def _arrays(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("shard-*.npy"))}


def test_parallel_gives_byte_identical_shards_to_serial(settings, prepared, tmp_path):
    data, manifest = prepared
    pre = _pre(settings, size=32, shard_size=3)
    preprocess(data, pre, manifest, tmp_path / "serial", workers=1,
               stats_path=tmp_path / "s1.json")
    preprocess(data, pre, manifest, tmp_path / "parallel", workers=2,
               stats_path=tmp_path / "s2.json")
    serial, parallel = _arrays(tmp_path / "serial"), _arrays(tmp_path / "parallel")
    assert len(serial) > 2 and serial == parallel


def test_store_holds_lab_at_the_working_size(settings, prepared, tmp_path):
    data, manifest = prepared
    preprocess(data, _pre(settings, size=32, shard_size=4), manifest, tmp_path / "p",
               workers=1, stats_path=tmp_path / "stats.json")
    train, val, test = (LabStore(tmp_path / "p" / split) for split in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == 16 and len(test) > 0  # params: a test split
    x = train[len(train) - 1]
    assert x.shape == (3, 32, 32) and x.dtype == lab.STORE_DTYPE
    assert 0 <= x[0].min() and x[0].max() <= 100
    assert np.abs(x[1:]).max() > 1  # real colour photos have colour


def test_rerun_after_a_crash_redoes_only_missing_shards(settings, prepared, tmp_path):
    data, manifest = prepared
    pre = _pre(settings, size=32, shard_size=4)
    stats_path = tmp_path / "stats.json"
    first = preprocess(data, pre, manifest, tmp_path / "p", workers=1, stats_path=stats_path)
    assert first["converted"] == 16
    shards = sorted((tmp_path / "p" / "train").glob("shard-*.npy"))
    before = shards[0].read_bytes()
    shards[0].unlink()  # as if the process died before writing it
    (tmp_path / "p" / "train" / ".shard-99999-junk.123.tmp.npy").write_bytes(b"partial")
    second = preprocess(data, pre, manifest, tmp_path / "p", workers=1,
                        stats_path=stats_path)
    assert second["converted"] == 4 and second["reused_from_earlier_run"] == 12
    assert shards[0].read_bytes() == before
    assert not list((tmp_path / "p").rglob("*.tmp*"))
    stats = json.loads(stats_path.read_text())
    assert stats["images_per_s"] > 0
