"""Hostile input never costs unbounded memory or time, and ends in a reason, not a traceback.

Table-driven over the input surfaces: image files through `colorize predict` (crafted headers
that claim billions of pixels, special files, sparse giants), archives through `prepare`,
model files, params.yaml, tracking URIs, and the clean-up of what killed processes leave.
Peak memory is read inside a child process (VmHWM, reset per case through
/proc/self/clear_refs), as in test_predict_large.py.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import cv2
import pytest
import torch

from colorize.cli import main
from colorize.data.images import ImageError, probe
from colorize.data.prepare import prepare
from colorize.data.sources import iter_items
from colorize.files import is_temporary, remove_stale_temporaries
from colorize.model.file import CHECKPOINT_FORMAT, network_entry, save_model
from conftest import BIN, REPO, network, photo_tiles, write_rgb

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                                reason="reads and resets peak memory through /proc")

MB = 1 << 20
PEAK_GROWTH = 150 * MB  # a refused input may cost this much memory at most
DEAD_PID = 2**22 + 12345  # beyond any pid_max: never a running process


# --- crafted images ------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG (CRCs right) whose IHDR claims width x height, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real tiny JPEG whose SOF0 segment is patched to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", photo_tiles(1, 16)[0])[1].tobytes())
    i = 2
    while data[i + 1] != 0xC0:  # walk the marker segments to the baseline SOF
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame claim width x height (29 bytes)."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
            + b"\x02\x02\x4c\x01\x00;")


RADIANCE = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n" + b"\x02\x02" * 8


@pytest.mark.parametrize("data,max_pixels,reason", [
    (png_claiming(30000, 30000), 200_000_000, "too_large"),
    (png_claiming(14000, 13000), 200_000_000, None),  # over Pillow's own limit, within ours
    (png_claiming(10000, 10000), 50_000_000, "too_large"),
    (png_claiming(10000, 10000), 200_000_000, None),  # within both: no Pillow warning either
    (png_claiming(0, 10), 200_000_000, "unreadable"),
    (jpeg_claiming(65500, 16000), 200_000_000, "too_large"),
    (jpeg_claiming(16000, 12000), 200_000_000, None),
    (gif_claiming(65535, 65535), 200_000_000, "too_large"),
    (RADIANCE, 200_000_000, "unreadable"),
    (b"", 200_000_000, "empty"),
], ids=["png-30000x30000", "png-182MP-allowed", "png-100MP-over-50MP", "png-100MP-allowed",
        "png-zero-width", "jpeg-65500x16000", "jpeg-192MP-allowed", "gif-65535x65535",
        "radiance-hdr", "empty"])
def test_probe_reads_the_claimed_size_from_the_header_alone(data, max_pixels, reason):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if reason is None:
            header = probe(data, max_pixels)
            assert header.width * header.height <= max_pixels
        else:
            with pytest.raises(ImageError) as e:
                probe(data, max_pixels)
            assert e.value.reason == reason, e.value
    assert time.perf_counter() - start < 0.5
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__]


# --- files through predict, memory measured in a child -----------------------------------

_PREDICT_CHILD = r"""
import json, sys, time
from colorize.errors import UserError
from colorize.predict.predict import predict

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

cases, model, warm, out = json.loads(sys.argv[1]), *sys.argv[2:]
predict([warm], out + "/warm", model)  # imports, model, thread pools: the fixed base
results = {}
for name, (inputs, model_file) in cases.items():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    base = kib("VmRSS")
    start = time.perf_counter()
    try:
        got = predict(inputs, out + "/" + name, model_file or model)
    except UserError as e:
        got = {"error": str(e)}
    results[name] = {"seconds": time.perf_counter() - start,
                     "grown": (kib("VmHWM") - base) * 1024, **got}
print("RESULTS " + json.dumps(results))
"""


def _deflated_model(model_file: Path, out: Path, zeros: int) -> Path:
    """The torch.save archive of `model_file` with its record data/0 replaced by `zeros` zero
    bytes, deflated (~1000:1): inflated, it would take `zeros` bytes of memory."""
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info, src.read(info))
                continue
            bomb = zipfile.ZipInfo(info.filename)
            bomb.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(bomb, "w") as f:
                for _ in range(zeros // MB):
                    f.write(bytes(MB))
    with zipfile.ZipFile(out) as zf:
        assert max(i.compress_size for i in zf.infolist() if i.compress_type) < zeros // 100
    return out


# name -> (inputs (files made by the fixture), model file or None, reason or error text)
PREDICT_CASES = {
    "png-30000x30000": (["bomb.png"], None, "too_large"),
    "jpeg-65500x16000": (["bomb.jpg"], None, "too_large"),
    "gif-65535x65535": (["bomb.gif"], None, "too_large"),
    "radiance-hdr": (["scene.hdr"], None, "unreadable"),
    "sparse-3GiB-jpg": (["x.jpg"], None, "too_large"),
    "fifo": (["fifo.jpg"], None, "not a file"),
    "dev-zero": (["/dev/zero"], None, "not a file"),
    "deflated-model-record": (["good.png"], "deflated.pt", "is compressed"),
}


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    save_model(network(head="regression", decoder_width=16), root / "model.pt", size=32)
    write_rgb(root / "good.png", photo_tiles(1, 40)[0])
    (root / "bomb.png").write_bytes(png_claiming(30000, 30000))
    (root / "bomb.jpg").write_bytes(jpeg_claiming(65500, 16000))
    (root / "bomb.gif").write_bytes(gif_claiming(65535, 65535))
    (root / "scene.hdr").write_bytes(RADIANCE)
    (root / "x.jpg").touch()
    os.truncate(root / "x.jpg", 3 << 30)  # sparse: 3 GiB claimed, nothing on disk
    os.mkfifo(root / "fifo.jpg")  # opening it would wait for a writer forever
    _deflated_model(root / "model.pt", root / "deflated.pt", 50 * MB)
    return root


@pytest.fixture(scope="module")
def predict_results(hostile_files) -> dict:
    root = hostile_files
    cases = {name: ([str(root / p) if not p.startswith("/") else p for p in inputs],
                    str(root / m) if m else None)
             for name, (inputs, m, _) in PREDICT_CASES.items()}
    done = subprocess.run([sys.executable, "-c", _PREDICT_CHILD, json.dumps(cases),
                           root / "model.pt", root / "good.png", root / "out"],
                          capture_output=True, text=True, timeout=120)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(line.removeprefix("RESULTS "))


@pytest.mark.parametrize("name", list(PREDICT_CASES))
def test_hostile_file_is_refused_fast_in_little_memory(predict_results, name):
    *_, expected = PREDICT_CASES[name]
    got = predict_results[name]
    if "error" in got:  # the model file
        assert expected in got["error"] and "\n" not in got["error"], got
    else:
        assert got["written"] == [] and len(got["skipped"]) == 1, got
        assert got["skipped"][0][1] == expected, got
    assert got["seconds"] < 1.0, got
    assert got["grown"] < PEAK_GROWTH, f"{got['grown'] / MB:.0f} MB"


def test_predict_cli_writes_every_good_photo_beside_hostile_ones(hostile_files, tmp_path):
    root = hostile_files
    photos = tmp_path / "photos"
    for i, tile in enumerate(photo_tiles(3, 40)):
        write_rgb(photos / f"good{i}.{'png' if i % 2 else 'jpg'}", tile)
    for name in ("bomb.png", "bomb.jpg", "bomb.gif"):
        shutil.copy(root / name, photos / name)
    (photos / "scene.jpg").write_bytes(RADIANCE)  # an unsupported format named .jpg
    (photos / f".good0.{DEAD_PID}.tmp.png").write_bytes(b"half-written")  # never a photo
    os.mkfifo(photos / "pipe.png")  # not a regular file: not taken from a folder
    out = tmp_path / "out"
    stale = out / f".old.{DEAD_PID}.tmp.png"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a killed run")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    start = time.perf_counter()
    done = subprocess.run([BIN / "colorize", "predict", photos, root / "fifo.jpg", "/dev/zero",
                           root / "x.jpg", "--out", out, "--model", root / "model.pt"],
                          capture_output=True, text=True, timeout=120, env=env)
    seconds = time.perf_counter() - start
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == [f"photos/good{i}.png" for i in range(3)]
    assert not stale.exists() and f"removed {stale}" in done.stdout
    skipped = {line.split(": ")[0].removeprefix("  skipped "): line.split(": ")[1].split(" (")[0]
               for line in done.stdout.splitlines() if line.startswith("  skipped ")}
    assert skipped == {
        str(photos / "bomb.png"): "too_large", str(photos / "bomb.jpg"): "too_large",
        str(photos / "bomb.gif"): "too_large", str(photos / "scene.jpg"): "unreadable",
        str(root / "fifo.jpg"): "not a file", "/dev/zero": "not a file",
        str(root / "x.jpg"): "too_large"}, done.stdout
    assert seconds < 60


# --- archives through prepare ---------------------------------------------------------------

def _jpg(i: int) -> bytes:
    return cv2.imencode(".jpg", photo_tiles(i + 1, 48)[i])[1].tobytes()


def _tar_with(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """Members as bytes, or as a count of zero bytes (streamed, never held)."""
    with tarfile.open(path, "w") as tf:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, int):
                info.size = content
                tf.addfile(info, _Zeros(content))
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _zip_with(path: Path, members: list[tuple[str, bytes | int]],
              declare: dict[str, int] | None = None) -> Path:
    """Deflated members (bytes, or a count of zero bytes); `declare` rewrites a member's
    uncompressed size in its local header and the central directory (a lying archive)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members:
            with zf.open(name, "w") as f:
                if isinstance(content, int):
                    for _ in range(content // MB):
                        f.write(bytes(MB))
                else:
                    f.write(content)
    data = bytearray(path.read_bytes())
    for name, size in (declare or {}).items():
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            i = data.find(signature)
            while i >= 0:
                name_at = i + (30 if signature == b"PK\x03\x04" else 46)
                if data[name_at:name_at + len(name)] == name.encode():
                    data[i + offset:i + offset + 4] = struct.pack("<I", size)
                i = data.find(signature, i + 1)
    path.write_bytes(bytes(data))
    return path


def _items(path: Path, max_bytes: int) -> tuple[list[tuple[str, str]], float, int]:
    """iter_items over an archive -> ([(name, problem reason or 'ok')], seconds, peak bytes
    allocated by Python meanwhile)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        got = [(i.name, i.problem.reason if i.problem else "ok" if i.data else "no data")
               for i in iter_items("archive", path, max_bytes=max_bytes)]
        return got, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


ARCHIVES = {
    # a member over max_bytes is not read, and the members after it are
    "tar-member-over-limit": (lambda p: _tar_with(p / "a.tar", [
        ("a.jpg", _jpg(0)), ("big.jpg", 40 * MB), ("c.jpg", _jpg(1))]),
        [("a.jpg", "ok"), ("big.jpg", "too_large"), ("c.jpg", "ok")]),
    "zip-member-declared-over-limit": (lambda p: _zip_with(p / "a.zip", [
        ("a.jpg", _jpg(0)), ("big.jpg", 64 * MB), ("c.jpg", _jpg(1))]),
        [("a.jpg", "ok"), ("big.jpg", "too_large"), ("c.jpg", "ok")]),
    # declares 1 KB, inflates to 64 MB: inflating stops at the declared size, the CRC fails
    "zip-member-inflates-past-its-declared-size": (lambda p: _zip_with(p / "a.zip", [
        ("a.jpg", _jpg(0)), ("liar.jpg", 64 * MB), ("c.jpg", _jpg(1))],
        declare={"liar.jpg": 1000}),
        [("a.jpg", "ok"), ("liar.jpg", "unreadable"), ("c.jpg", "ok")]),
    "zip-member-with-a-bad-crc": (lambda p: _zip_crc(_zip_with(p / "a.zip", [
        ("a.jpg", _jpg(0)), ("bad.jpg", _jpg(2)), ("c.jpg", _jpg(1))]), "bad.jpg"),
        [("a.jpg", "ok"), ("bad.jpg", "unreadable"), ("c.jpg", "ok")]),
    "zip-member-encrypted": (lambda p: _zip_flag(_zip_with(p / "a.zip", [
        ("a.jpg", _jpg(0)), ("secret.jpg", _jpg(2)), ("c.jpg", _jpg(1))]), "secret.jpg"),
        [("a.jpg", "ok"), ("secret.jpg", "unreadable"), ("c.jpg", "ok")]),
}


def _patch_zip(path: Path, name: str, local: int, central: int, patch) -> Path:
    """Apply patch(data, offset) to a member's header field, at `local` bytes into its local
    header and `central` bytes into its central-directory entry."""
    data = bytearray(path.read_bytes())
    for signature, offset, name_at in ((b"PK\x03\x04", local, 30),
                                       (b"PK\x01\x02", central, 46)):
        i = data.find(signature)
        while i >= 0:
            if data[i + name_at:i + name_at + len(name)] == name.encode():
                patch(data, i + offset)
            i = data.find(signature, i + 1)
    path.write_bytes(bytes(data))
    return path


def _zip_crc(path: Path, name: str) -> Path:
    """Give a member a wrong CRC-32."""
    def wrong(data: bytearray, at: int) -> None:
        data[at:at + 4] = b"\x12\x34\x56\x78"

    return _patch_zip(path, name, 14, 16, wrong)


def _zip_flag(path: Path, name: str) -> Path:
    """Set the 'encrypted' flag bit of a member (local header and central directory)."""
    def encrypted(data: bytearray, at: int) -> None:
        data[at] |= 1

    return _patch_zip(path, name, 6, 8, encrypted)


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_archive_member_is_refused_without_being_read(tmp_path, name):
    make, expected = ARCHIVES[name]
    archive = make(tmp_path)
    got, seconds, peak = _items(archive, max_bytes=1 * MB)
    assert got == expected
    assert seconds < 2.0
    assert peak < 8 * MB, f"{peak / MB:.0f} MB allocated"


def test_prepare_rejects_a_large_archive_member_and_keeps_the_photos(settings, tmp_path,
                                                                       monkeypatch):
    import colorize.data.prepare as prepare_module

    photos = [(f"p{i:02d}.jpg", _jpg(i)) for i in range(12)]
    archive = _tar_with(tmp_path / "a.tar", [*photos[:6], ("huge.jpg", 2 * MB), *photos[6:]])
    monkeypatch.setattr(prepare_module, "max_file_bytes", lambda max_pixels: 1 * MB)
    data = settings.override(data={"source": "archive", "path": str(archive),
                                   "val_fraction": 0.3, "min_size": 16}).data
    res = prepare(data, tmp_path / "interim", tmp_path / "data.json")
    assert [r["reason"] for r in res.rejected if r["name"] == "huge.jpg"] == ["too_large"]
    assert sorted(r["name"] for r in res.manifest) == [n for n, _ in photos]
    assert res.report["rejected_by_reason"] == {"too_large": 1}


# --- model files --------------------------------------------------------------------------

def _set(section: str | None, key: str, value):
    def mutate(entry):
        (entry[section] if section else entry)[key] = value
    return mutate


def _first(entry) -> str:
    return next(k for k, v in entry["state_dict"].items() if v.is_floating_point())


def _drop_tensor(entry):
    del entry["state_dict"][_first(entry)]


def _wrong_shape(entry):
    name = _first(entry)
    entry["state_dict"][name] = torch.zeros(7, 3)


def _float64(entry):
    name = _first(entry)
    entry["state_dict"][name] = entry["state_dict"][name].double()


def _odd_keys(entry):
    entry["state_dict"].update({1: torch.zeros(1), "zz": torch.zeros(1)})


def _as_checkpoint(history):
    def mutate(entry):
        return {"format": CHECKPOINT_FORMAT, "network": entry, "history": history}
    return mutate


# (id, mutation of a real model file's dict, text the one-line error must contain)
MODEL_CASES = [
    ("decoder_width-8192", _set("model", "decoder_width", 8192), "model.decoder_width"),
    ("trunk_depth-7", _set("model", "trunk_depth", 7), "model.trunk_depth"),
    ("head-foo", _set("model", "head", "foo"), "model.head"),
    ("unknown-model-key-100k", _set("model", "k" * 100_000, 1), "model.kkk"),
    ("size-7", _set(None, "size", 7), "size: "),
    ("size-0", _set(None, "size", 0), "size: "),
    ("size-abc", _set(None, "size", "abc"), "size: "),
    ("size-65536", _set(None, "size", 65536), "size: "),
    ("size-12", _set(None, "size", 12), "multiple of 8"),
    ("model-a-string", _set(None, "model", "resnet"), "model: expected a dict, got str"),
    ("meta-a-list", _set(None, "meta", [1, 2]), "meta: expected a dict, got list"),
    ("meta-run_id-an-int", _set(None, "meta", {"run_id": 12345}), "meta.run_id"),
    ("state_dict-a-list", _set(None, "state_dict", []), "state_dict: expected a dict"),
    ("format-unknown", _set(None, "format", "colorize-model/99"), "not a colorize model"),
    ("tensor-missing", _drop_tensor, "missing ["),
    ("tensor-wrong-shape", _wrong_shape, "(7, 3), expected"),
    ("tensor-float64", _float64, "float64"),
    ("tensor-names-not-strings", _odd_keys, "unexpected"),
    ("checkpoint-history-an-int", _as_checkpoint(5), "history: expected a list"),
]


@pytest.fixture(scope="module")
def model_entry():
    torch.manual_seed(0)
    return network_entry(network(head="regression", decoder_width=16), 32)


def _one_line_error(capsys, argv, command="predict") -> str:
    start = time.perf_counter()
    rc = main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"colorize {command}: error: "), err[:2000]
    assert len(lines[0]) < 500, lines[0][:2000]
    assert seconds < 3.0
    return lines[0]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in MODEL_CASES],
                         ids=[c[0] for c in MODEL_CASES])
def test_bad_model_file_is_one_line_naming_the_field(capsys, tmp_path, model_entry, mutate,
                                                     expected):
    entry = copy.deepcopy(model_entry)
    entry = mutate(entry) or entry
    torch.save(entry, tmp_path / "m.pt")
    write_rgb(tmp_path / "p.png", photo_tiles(1, 32)[0])
    line = _one_line_error(capsys, ["predict", tmp_path / "p.png", "--out", tmp_path / "o",
                                    "--model", tmp_path / "m.pt"])
    assert expected in line, line
    assert not (tmp_path / "o" / "p.png").exists()


@pytest.mark.parametrize("make,expected", [
    (lambda p, e: p.write_bytes(pickle.dumps({k: v for k, v in e.items() if k != "state_dict"})),
     "not a readable model file"),
    (lambda p, e: p.write_bytes(b""), "not a readable model file"),
    (lambda p, e: p.write_bytes(b"PK\x03\x04" + bytes(100)), "not a readable model file"),
], ids=["pickle-not-zip", "empty", "zip-signature-only"])
def test_a_file_that_is_no_torch_archive_is_refused(capsys, tmp_path, model_entry, make,
                                                    expected):
    make(tmp_path / "m.pt", model_entry)
    write_rgb(tmp_path / "p.png", photo_tiles(1, 32)[0])
    line = _one_line_error(capsys, ["predict", tmp_path / "p.png", "--out", tmp_path / "o",
                                    "--model", tmp_path / "m.pt"])
    assert expected in line, line


def test_meta_cannot_pose_as_a_training_checkpoint(capsys, tmp_path, model_entry):
    entry = copy.deepcopy(model_entry)
    entry["meta"] = {"checkpoint": True, "best_epoch": 3}  # no epochs_done: not for it to say
    torch.save(entry, tmp_path / "m.pt")
    write_rgb(tmp_path / "p.png", photo_tiles(1, 32)[0])
    assert main(["predict", str(tmp_path / "p.png"), "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "best epoch 3" in out and "training checkpoint" not in out


def test_oversized_architecture_is_refused_by_the_real_cli(tmp_path, model_entry):
    entry = copy.deepcopy(model_entry)
    entry["model"]["decoder_width"] = 8192
    torch.save(entry, tmp_path / "m.pt")
    write_rgb(tmp_path / "p.png", photo_tiles(1, 32)[0])
    done = subprocess.run([BIN / "colorize", "predict", "p.png", "--out", "o", "--model",
                           "m.pt"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "colorize predict: error: m.pt: model.decoder_width: Input should be less than or "
        "equal to 2048 (got 8192)"]


# --- params.yaml ----------------------------------------------------------------------------

def _line(key: str) -> int:
    """The line number of `  key:` in the repository's params.yaml (the first one)."""
    lines = (REPO / "params.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(f"  {key}:"))


def _params(**replace: str) -> str:
    """The repository's params.yaml with lines `  key: value` replaced (key: 'section.key')."""
    text = (REPO / "params.yaml").read_text()
    section = None
    lines = []
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.split(":")[0]
        key = line.strip().split(":")[0]
        if line.startswith("  ") and f"{section}.{key}" in replace:
            line = f"  {key}: {replace.pop(f'{section}.{key}')}"
        lines.append(line)
    assert not replace, replace
    return "\n".join(lines) + "\n"


# Nine levels of nine references: 9**9 (387 million) lols from ~600 bytes.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))
LONG = 100_000

# (id, params.yaml text, text the one-line error must contain)
PARAMS_CASES = [
    ("duplicate-section", _params() + "data:\n  source: folder\n", "the key 'data' appears twice"),
    ("duplicate-key", _params().replace("  path: ", "  source: folder\n  path: ", 1),
     "line 4: the key 'source' appears twice"),
    ("billion-laughs", BILLION_LAUGHS, "aliases are not allowed"),
    ("two-megabytes", _params() + ("# padding\n" * 210_000), "not a parameters file"),
    ("string-for-a-number", _params(**{"data.max_pixels": "x" * LONG}), "data.max_pixels"),
    ("temperature-1e-300", _params(**{"evaluate.temperature": "1e-300"}),
     "evaluate.temperature"),
    ("unknown-key-100k", _params() .replace("  path: ", f"  ? {'k' * LONG}\n  : 1\n  path: ", 1),
     "data.kkk"),
    ("duplicate-key-100k", _params().replace(
        "  path: ", f"  ? {'k' * LONG}\n  : 1\n  ? {'k' * LONG}\n  : 2\n  path: ", 1),
     "appears twice"),
    ("alias-name-100k", _params() + f"x: &{'a' * LONG} 1\ny: *{'a' * LONG}\n",
     "aliases are not allowed"),
    ("integer-5000-digits", _params(**{"data.max_pixels": "1" + "0" * 5000}),
     f"line {_line('max_pixels')}: '10000000000000000000000000000000000000000000000000000000"
     "... cannot be read"),
    ("impossible-date", _params(**{"train.seed": "2020-13-45"}),
     f"line {_line('seed')}: '2020-13-45' cannot be read (month must be in 1..12)"),
    ("unhashable-key", _params() + "? [1, 2]\n: x\n", "not valid YAML"),
    ("reserved-alias-100k", _params(**{"tracking.alias": "v" + "1" * LONG}),
     "tracking.alias: 'v111"),
    ("nested-200000-deep", "[" * 200_000 + "\n", "nested"),
    ("binary", "\x00\xff\xfe" * 100, "not valid YAML"),
    ("top-level-a-list", "- 1\n- 2\n", "top level must be a mapping"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PARAMS_CASES],
                         ids=[c[0] for c in PARAMS_CASES])
def test_bad_params_file_is_one_short_line(capsys, tmp_path, text, expected):
    path = tmp_path / "p.yaml"
    path.write_bytes(text.encode("latin-1") if text.startswith("\x00") else text.encode())
    line = _one_line_error(capsys, ["--params", path, "prepare"], "prepare")
    assert expected in line, line
    assert len(line) < 300, line[:1000]


_CONFIG_CHILD = r"""
import json, sys, time
from colorize.cli import main

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

import colorize.config, yaml, pydantic  # the fixed base
base = kib("VmRSS")
start = time.perf_counter()
rc = main(["--params", sys.argv[1], "prepare"])
print("RESULT " + json.dumps({"rc": rc, "seconds": time.perf_counter() - start,
                              "grown": (kib("VmHWM") - base) * 1024}))
"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, "[" * 200_000 + "\n"],
                         ids=["billion-laughs", "nested-200000-deep"])
def test_params_bombs_cost_little_time_and_memory(tmp_path, text):
    assert len(text) < 700 or text.startswith("[")
    (tmp_path / "p.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-c", _CONFIG_CHILD, tmp_path / "p.yaml"],
                          capture_output=True, text=True, timeout=60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stderr[-3000:]
    got = json.loads(line.removeprefix("RESULT "))
    assert got["rc"] == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert got["seconds"] < 5.0 and got["grown"] < PEAK_GROWTH, got


# --- tracking URIs --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TRACKING_CASES = [
    ("garbage", lambda: "garbage", "not a tracking URI"),
    ("garbage-100k", lambda: "x" * LONG, "not a tracking URI"),
    ("http-nothing-listens", lambda: f"http://u:secret@127.0.0.1:{_free_port()}",
     "does not answer"),
    # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; where that is installed, nothing listens
    ("postgresql-no-driver", lambda: "postgresql://u:secret@127.0.0.1:1/x",
     ("postgresql needs its database driver", "does not answer")),
    ("postgresql-nothing-listens", lambda: "postgresql+psycopg2://u:secret@127.0.0.1:1/x",
     "does not answer"),
]


@pytest.mark.parametrize("uri,expected", [c[1:] for c in TRACKING_CASES],
                         ids=[c[0] for c in TRACKING_CASES])
def test_unusable_tracking_uri_fails_fast_in_one_line(tmp_path, uri, expected):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri(), NO_ALBUMENTATIONS_UPDATE="1")
    start = time.perf_counter()
    done = subprocess.run([BIN / "colorize", "promote", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("colorize promote: error: "), lines[-5:]
    assert any(text in lines[0] for text in ([expected] if isinstance(expected, str)
                                             else expected)), lines[0][:1000]
    assert len(lines[0]) < 400, lines[0][:1000]
    assert "secret" not in lines[0]  # a password in the URI is not shown
    assert seconds < 20, f"{seconds:.1f} s"
    assert not (tmp_path / "mlflow.db").exists()


def test_a_server_that_accepts_but_never_answers_fails_in_seconds(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    with socket.socket() as server:  # the kernel completes connections; nobody answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{server.getsockname()[1]}",
                   NO_ALBUMENTATIONS_UPDATE="1")
        start = time.perf_counter()
        done = subprocess.run([BIN / "colorize", "promote", "1"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr[-3000:]
    assert "does not answer" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert seconds < 20, f"{seconds:.1f} s"


# --- clean-up ---------------------------------------------------------------------------------

def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("name,temporary", [
    (".photo.123.tmp.png", True),
    (".photo.123.tmp", True),
    (".a.b.c.4567.tmp.jpg", True),
    ("..png.9.tmp", True),
    ("photo.123.tmp.png", False),  # not hidden: the user's
    (".photo.tmp.png", False),  # no pid
    (".photo.abc.tmp.png", False),
    (".photo.123.tmp.png.bak", False),
    (".photo.123.tmpx", False),
    ("photo.png", False),
    (".hidden.png", False),
])
def test_is_temporary(name, temporary):
    assert is_temporary(name) is temporary


def test_remove_stale_temporaries_keeps_live_ones_and_user_files(tmp_path):
    dead = _dead_pid()
    files = {
        f".a.{DEAD_PID}.tmp.png": False,  # dead: removed
        f".b.{dead}.tmp.png": False,  # a process that ran and was waited for
        f"sub/.c.{DEAD_PID}.tmp.jpg": False,  # in a subfolder too
        f".d.{'9' * 30}.tmp.png": False,  # no such pid can exist
        f".e.{os.getpid()}.tmp.png": True,  # running: kept
        "photo.png": True,
        ".hidden.png": True,
        f"g.{DEAD_PID}.tmp.png": True,  # not hidden
    }
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / f".dir.{DEAD_PID}.tmp").mkdir()  # a folder, not a temporary file
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(
        n for n, kept in files.items() if not kept)
    for name, kept in files.items():
        assert (tmp_path / name).exists() is kept, name
    assert (tmp_path / f".dir.{DEAD_PID}.tmp").is_dir()


_POOL_CHILD = r"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from colorize.preprocess.preprocess import exit_with_parent

pool = ProcessPoolExecutor(max_workers=2, initializer=exit_with_parent,
                           initargs=(os.getpid(),))
futures = [pool.submit(time.sleep, 60) for _ in range(2)]
while len(pool._processes) < 2:
    time.sleep(0.05)
print(" ".join(map(str, pool._processes)), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_preprocess_workers_exit_when_their_parent_is_killed():
    child = subprocess.Popen([sys.executable, "-c", _POOL_CHILD], stdout=subprocess.PIPE,
                             text=True)
    workers: list[int] = []
    try:
        workers = [int(p) for p in child.stdout.readline().split()]
        assert len(workers) == 2 and all(map(_alive, workers))
        time.sleep(0.5)  # the workers' watch threads are running
        child.send_signal(signal.SIGKILL)
        child.wait()
        start = time.perf_counter()
        while any(map(_alive, workers)) and time.perf_counter() - start < 5:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), f"{time.perf_counter() - start:.1f} s"
    finally:
        child.kill()
        child.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
