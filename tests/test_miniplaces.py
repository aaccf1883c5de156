"""The archive code path over real Places photos: ../shared/data/miniplaces-11k.tar (11k JPEGs)."""

import json

import pytest

from colorize.data.prepare import prepare
from colorize.preprocess.preprocess import preprocess
from colorize.preprocess.store import LabStore
from conftest import SHARED_DATA

ARCHIVE = SHARED_DATA / "miniplaces-11k.tar"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ARCHIVE.exists(), reason=f"{ARCHIVE} not present (shared data only)"),
]


def test_miniplaces_archive_through_prepare_and_preprocess(settings, tmp_path):
    s = settings.override(data={"source": "archive", "path": str(ARCHIVE), "val_fraction": 0.0909},
                          preprocess={"size": 64, "shard_size": 2048, "workers": 2},
                          train={"crop": 64})
    data = s.data
    prepare(data, tmp_path / "interim", tmp_path / "data.json")
    report = json.loads((tmp_path / "data.json").read_text())
    assert report["found"] == 11_000
    assert report["used"] + report["rejected"] == 11_000
    assert sum(report["rejected_by_reason"].values()) == report["rejected"]
    assert report["rejected_by_reason"].get("near_gray", 0) > 0  # the archive has gray photos
    assert report["train"] + report["val"] + report["test"] == report["used"]
    assert 0.08 < report["val"] / report["used"] < 0.10
    assert 0.18 < report["test"] / report["used"] < 0.22  # params.yaml's test_fraction 0.2
    stats = preprocess(data, s.preprocess,
                       tmp_path / "interim/manifest.csv", tmp_path / "processed", workers=2,
                       stats_path=tmp_path / "stats.json")
    assert stats["converted"] == report["used"]
    assert len(LabStore(tmp_path / "processed/train")) == report["train"]
    assert len(LabStore(tmp_path / "processed/val")) == report["val"]
    assert len(LabStore(tmp_path / "processed/test")) == report["test"]
