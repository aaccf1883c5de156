"""The prepare stage over folders and archives, with a corpus of bad files mixed in."""

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from colorize.data.manifest import read_manifest
from colorize.data.prepare import prepare
from colorize.data.sources import SourceError, iter_items
from conftest import photo_tiles, write_rgb


def _data(settings, **values):
    return settings.override(data=values).data


def _add_bad_files(root):
    root.mkdir(parents=True, exist_ok=True)
    tile = photo_tiles(1, 48)[0]
    (root / "bad").mkdir(exist_ok=True)
    (root / "bad" / "empty.jpg").write_bytes(b"")
    (root / "bad" / "notes.jpg").write_text("this is a text file renamed .jpg\n")
    (root / "bad" / "corrupt.png").write_bytes(np.random.default_rng(1).bytes(999))
    jpg = cv2.imencode(".jpg", tile)[1].tobytes()
    (root / "bad" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    gray = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(root / "bad" / "gray.png"), gray)
    cv2.imwrite(str(root / "bad" / "one_pixel.png"), tile[:1, :1])
    drawing = np.full((48, 48, 3), 20, np.uint8)
    drawing[:24, :24] = (0, 0, 200)
    cv2.imwrite(str(root / "bad" / "drawing.png"), drawing)
    shutil.copy(next(root.glob("sub0/*.jpg")), root / "bad" / "duplicate.jpg")
    # Awkward but usable: CMYK, RGBA, 16-bit.
    bio = io.BytesIO()
    Image.fromarray(photo_tiles(17, 48)[16]).convert("CMYK").save(bio, "JPEG")
    (root / "ok_cmyk.jpg").write_bytes(bio.getvalue())
    rgba = np.dstack([photo_tiles(18, 48)[17], np.full((48, 48), 200, np.uint8)])
    cv2.imwrite(str(root / "ok_rgba.png"), rgba)
    cv2.imwrite(str(root / "ok_16bit.png"), photo_tiles(19, 48)[18].astype(np.uint16) * 257)
    (root / "readme.txt").write_text("not an image name: ignored")


EXPECTED = {"empty": 1, "unreadable": 3, "near_gray": 1, "too_small": 1, "drawing": 1,
            "duplicate": 1}


def test_folder_with_bad_files(settings, photo_folder, tmp_path):
    _add_bad_files(photo_folder)
    s = _data(settings, source="folder", path=str(photo_folder), val_fraction=0.3, min_size=16)
    res = prepare(s, tmp_path / "interim", tmp_path / "data.json")
    report = json.loads((tmp_path / "data.json").read_text())
    assert report["rejected_by_reason"] == EXPECTED
    assert report["found"] == 16 + 3 + sum(EXPECTED.values())
    assert report["used"] == 19 and report["train"] + report["val"] + report["test"] == 19
    rejected = {r["name"]: r["reason"] for r in res.rejected}
    assert rejected["bad/truncated.jpg"] == "unreadable"
    pair = [rejected.get("bad/duplicate.jpg"), rejected.get("sub0/img00.jpg")]
    assert pair.count("duplicate") == 1  # whichever of the two came second
    used = {r["name"] for r in read_manifest(tmp_path / "interim" / "manifest.csv")}
    assert {"ok_cmyk.jpg", "ok_rgba.png", "ok_16bit.png"} <= used


def _tar(root, path, mode):
    with tarfile.open(path, mode) as tf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                tf.add(p, arcname=f"places/{p.relative_to(root).as_posix()}")
    return path


def _zip(root, path):
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, f"places/{p.relative_to(root).as_posix()}")
    return path


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_archive_gives_the_same_split_as_the_folder(settings, photo_folder, tmp_path, kind):
    _add_bad_files(photo_folder)
    archive = (_zip(photo_folder, tmp_path / "a.zip") if kind == "zip"
               else _tar(photo_folder, tmp_path / f"a.{kind}", "w:gz" if kind == "tar.gz" else "w"))
    common = {"val_fraction": 0.3, "min_size": 16}
    a = prepare(_data(settings, source="archive", path=str(archive), **common),
                tmp_path / "ia", tmp_path / "a.json")
    f = prepare(_data(settings, source="folder", path=str(photo_folder), **common),
                tmp_path / "if", tmp_path / "f.json")
    assert {(r["id"], r["split"]) for r in a.manifest} == {(r["id"], r["split"])
                                                           for r in f.manifest}
    assert a.report["rejected_by_reason"] == EXPECTED


def test_archive_is_streamed_with_selected_members(photo_folder, tmp_path):
    archive = _tar(photo_folder, tmp_path / "a.tar.gz", "w:gz")
    names = [i.name for i in iter_items("archive", archive)]
    assert len(names) == 16
    wanted = names[3:5]
    assert [i.name for i in iter_items("archive", archive, names=wanted)] == wanted


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_members_named_outside_the_archive_write_nothing_outside(photo_folder, tmp_path, kind):
    """Members are read as bytes, never extracted: a name that climbs out of the archive
    (../../escaped.jpg, /etc/passwd.jpg) creates no file anywhere; it is an image like any."""
    blob = (photo_folder / "sub0" / "img00.jpg").read_bytes()
    other = (photo_folder / "sub1" / "img01.png").read_bytes()
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = work / f"evil.{kind}"
    names = ["../../escaped.jpg", "/tmp/absolute-escaped.png"]
    if kind == "tar":
        with tarfile.open(archive, "w") as tf:
            for name, data in zip(names, (blob, other), strict=True):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    else:
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in zip(names, (blob, other), strict=True):
                zf.writestr(name, data)
    before = set((tmp_path).rglob("*"))
    items = list(iter_items("archive", archive))
    assert [i.name for i in items] == names and items[0].data == blob
    assert set(tmp_path.rglob("*")) == before
    assert not Path("/tmp/absolute-escaped.png").exists()


def test_truncated_archive_is_a_clear_error(photo_folder, tmp_path):
    archive = _tar(photo_folder, tmp_path / "a.tar.gz", "w:gz")
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SourceError, match="cannot read archive"):
        list(iter_items("archive", archive))


def test_missing_source_is_a_clear_error(settings, tmp_path):
    with pytest.raises(SourceError, match="not found"):
        prepare(_data(settings, source="folder", path=str(tmp_path / "nowhere")), tmp_path,
                tmp_path / "data.json")


def test_adding_photos_keeps_existing_assignments(settings, photo_folder, tmp_path):
    s = _data(settings, source="folder", path=str(photo_folder), val_fraction=0.3, min_size=16)
    before = {r["id"]: r["split"] for r in prepare(s, tmp_path / "a", tmp_path / "a.json").manifest}
    for i, tile in enumerate(photo_tiles(28, 48)[16:]):
        write_rgb(photo_folder / "added" / f"new{i}.png", tile)
    after = {r["id"]: r["split"] for r in prepare(s, tmp_path / "b", tmp_path / "b.json").manifest}
    assert len(after) == len(before) + 12
    assert all(after[i] == split for i, split in before.items())


def test_reencoded_or_resized_copies_are_near_duplicates(settings, photo_folder, tmp_path):
    original = cv2.imread(str(photo_folder / "sub0" / "img00.jpg"))
    copies = photo_folder / "zz_copies"  # listed after the original
    copies.mkdir()
    cv2.imwrite(str(copies / "requality.jpg"), original, [cv2.IMWRITE_JPEG_QUALITY, 60])
    cv2.imwrite(str(copies / "smaller.png"), cv2.resize(original, (40, 40),
                                                        interpolation=cv2.INTER_AREA))
    s = _data(settings, source="folder", path=str(photo_folder), val_fraction=0.3, min_size=16)
    res = prepare(s, tmp_path / "interim", tmp_path / "data.json")
    near = {r["name"]: r["detail"] for r in res.rejected if r["reason"] == "near_duplicate"}
    assert set(near) == {"zz_copies/requality.jpg", "zz_copies/smaller.png"}
    assert all(d.endswith("sub0/img00.jpg") for d in near.values())
    assert res.report["used"] == 16  # the 16 distinct photos all stay
