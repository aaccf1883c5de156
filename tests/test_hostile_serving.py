"""Hostile input on the serving side: what a server answers `colorize request`, what a client
posts to the served model (predict/service.py), and request bodies at `colorize serve`'s
BodyLimit. Real HTTP on 127.0.0.1 throughout; nothing of the code under test is mocked (only
its limits are made small, so the tests stay fast).

The promises: no answer can make the client hold unbounded memory or wait past its deadline,
a bad answer skips that photo only (with the reason) and writes nothing for it, an output
never replaces an input, a bomb is refused from its header and never sent or decoded.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from colorize.imaging import encode_png
from colorize.predict import client
from conftest import BIN, LoopbackServer, network, photo_tiles, write_rgb

# --- crafted files ------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming width x height RGB pixels, then a little of the data: a
    decoder that believed it would allocate width * height * 3 bytes (2.7 GB for 30000^2)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * (1 << 16), 9)) + _chunk(b"IEND", b""))


@functools.cache
def zero_bomb(width: int = 10000, height: int = 10000) -> bytes:
    """A complete, valid PNG of width x height black pixels: 300 KB that decode to 300 MB."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte, then the row
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def jpeg_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A JPEG whose frame header (SOF0) claims width x height, with almost no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(
        bytes([i, 0x11, 0]) for i in (1, 2, 3))
    sos = b"\x03" + b"".join(bytes([i, 0]) for i in (1, 2, 3)) + b"\x00\x3f\x00"
    return (b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
            + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\0" * 100 + b"\xff\xd9")


def png_of(width: int, height: int, value: int = 128) -> bytes:
    return encode_png(np.full((height, width, 3), value, np.uint8))


def size_of(image: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(image)) as im:
        return im.size


# --- hostile servers for `colorize request` -----------------------------------------------


class Hostile(LoopbackServer):
    """A loopback server that answers every POST with `answer(handler, photo)`, where photo is
    the posted image file (decoded from the request); it records the photos that arrived. The
    answers that stall watch `handler.stop`, set when the `with` block ends."""

    def __init__(self, answer, protocol: str = "HTTP/1.0"):
        self.photos: list[bytes] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol
            stop = server.stop

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                record = json.loads(body)["dataframe_records"][0]
                server.photos.append(base64.b64decode(record["image"]))
                self.close_connection = True
                try:
                    answer(self, server.photos[-1])
                except OSError:  # the client hung up on us: what it should do
                    pass

        super().__init__(Handler)

    def __exit__(self, *exc):
        self.stop.set()
        super().__exit__(*exc)


def reply(status: int, body: bytes | dict | list, ctype: str = "application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def answer(h, photo):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return answer


def raw(data: bytes):
    """Bytes written as they are, no HTTP framing of ours (then the connection closes)."""
    def answer(h, photo):
        h.wfile.write(data)
    return answer


def rows(image, error: str = "") -> dict:
    return {"predictions": [{"image": image, "error": error}]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def good(h, photo):
    """The served model's answer, as far as the client can tell: a PNG of the photo's size."""
    reply(200, rows(b64(png_of(*size_of(photo)))))(h, photo)


DEEP = b"[" * 100_000  # json.loads recurses once per bracket

BAD_ANSWERS = [
    ("empty-object", reply(200, {}), "not the served model's answer"),
    ("no-predictions", reply(200, {"predictions": []}), "not the served model's answer"),
    ("json-list", reply(200, [1, 2]), "not the served model's answer"),
    ("row-not-object", reply(200, {"predictions": [5]}), "not the served model's answer"),
    ("image-not-text", reply(200, rows(5)), "not the served model's answer"),
    ("image-not-base64", reply(200, rows("@@@@ not base64")), "not the served model's answer"),
    ("html", reply(200, b"<html><body>proxy error</body></html>", "text/html"),
     "not the served model's answer"),
    ("deeply-nested-json", reply(200, DEEP), "not the served model's answer"),
    ("row-error", reply(200, rows("", "too_large: 1x1")), "the server: too_large: 1x1"),
    ("empty-500", reply(500, b""), "HTTP 500: no message"),
    ("400-json-message", reply(400, {"error_code": "BAD", "message": "refused\nsecond line"}),
     "HTTP 400: refused"),
    ("400-null-message", reply(400, {"message": None}), "HTTP 400"),
    ("400-list-message", reply(400, {"message": ["a", "b"]}), "HTTP 400"),
    ("400-deeply-nested-json", reply(400, DEEP), "HTTP 400"),
    ("arbitrary-bytes-as-image", reply(200, rows(b64(np.random.default_rng(0).bytes(4000)))),
     "the answer is not an image (unreadable"),
    ("empty-image", reply(200, rows("")), "the answer is not an image (empty"),
    ("png-of-wrong-size", reply(200, rows(b64(png_of(8, 8)))),
     "the answer is a 8x8 PNG, not a 40x40 PNG"),
    ("jpeg-not-png", reply(200, rows(b64(
        cv2.imencode(".jpg", np.zeros((40, 40, 3), np.uint8))[1].tobytes()))),
     "the answer is a 40x40 JPEG, not a 40x40 PNG"),
    ("bomb-png", reply(200, rows(b64(png_bomb()))), "the answer is not an image (too_large"),
    ("hang-up", raw(b""), "connection failed"),
    ("not-http", raw(b"SSH-2.0-OpenSSH_9.6\r\n"), "connection failed"),
    ("endless-status-line", raw(b"HTTP/1.0 200 " + b"A" * 100_000), "connection failed"),
    ("endless-headers", raw(b"HTTP/1.0 200 OK\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n{}"),
     "connection failed"),
    ("endless-chunk-size", raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + b"f" * 100_000), "connection failed"),
]


@pytest.fixture
def photo(tmp_path) -> Path:
    return write_rgb(tmp_path / "in" / "p.jpg", photo_tiles(1, 40)[0])


@pytest.mark.parametrize("answer,detail", [c[1:] for c in BAD_ANSWERS],
                         ids=[c[0] for c in BAD_ANSWERS])
def test_bad_answer_skips_the_photo_and_writes_nothing(tmp_path, capsys, photo, answer, detail):
    out = tmp_path / "out"
    with Hostile(answer) as server:
        result = client.request([str(photo)], server.url, str(out))
    assert len(server.photos) == 1 and server.photos[0] == photo.read_bytes()  # it was sent
    assert result["written"] == [] and result["skipped"] == [(str(photo), "no answer")]
    assert list(out.iterdir()) == []  # not even a temporary
    printed = capsys.readouterr().out
    assert f"skipped {photo}: no answer ({detail}" in printed, printed


def test_refused_photo_beside_good_ones(tmp_path, capsys):
    """The server refuses one photo (HTTP 400 with MLflow's JSON message): the others are
    still sent and written, and the refused one is listed with its reason."""
    paths = [write_rgb(tmp_path / f"p{i}.png", tile)
             for i, tile in enumerate(photo_tiles(3, 40))]
    paths[1] = write_rgb(paths[1], photo_tiles(2, 48)[1])  # the one refused: 48 px

    def picky(h, photo):
        if size_of(photo) == (48, 48):
            reply(400, {"error_code": "INVALID_PARAMETER_VALUE",
                        "message": "refused for the test"})(h, photo)
        else:
            good(h, photo)

    out = tmp_path / "out"
    with Hostile(picky) as server:
        result = client.request([str(p) for p in paths], server.url, str(out))
    assert [size_of(p) for p in server.photos] == [(40, 40), (48, 48), (40, 40)]
    assert result["written"] == [str(out / "p0.png"), str(out / "p2.png")]
    assert result["skipped"] == [(str(paths[1]), "no answer")]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]
    assert size_of((out / "p0.png").read_bytes()) == (40, 40)
    assert "no answer (HTTP 400: refused for the test)" in capsys.readouterr().out


def _stream(framing: str, total: int):
    """An answer of `total` bytes (a JSON that never ends), framed by Content-Length, chunked
    transfer encoding or the connection's end; it records how much the client let through."""
    sent = [0]
    head = b'{"predictions": [{"image": "'

    def answer(h, photo):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if framing == "content-length":
            h.send_header("Content-Length", str(total))
        elif framing == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = head + b"A" * ((1 << 16) - len(head))
        while sent[0] < total and not h.stop.is_set():
            data = block if framing != "chunked" else b"%x\r\n%s\r\n" % (len(block), block)
            h.wfile.write(data)
            sent[0] += len(block)
            block = b"A" * (1 << 16)
    return answer, sent


@pytest.mark.parametrize("framing", ["content-length", "chunked", "connection-close"])
def test_oversize_answer_is_cut_off(tmp_path, capsys, monkeypatch, photo, framing):
    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 100_000)
    total = 256 << 20
    answer, sent = _stream(framing, total)
    out = tmp_path / "out"
    start = time.monotonic()
    with Hostile(answer, "HTTP/1.1" if framing == "chunked" else "HTTP/1.0") as server:
        result = client.request([str(photo)], server.url, str(out))
        elapsed = time.monotonic() - start
        for _ in range(100):  # the server notices the hang-up
            before = sent[0]
            time.sleep(0.05)
            if sent[0] == before:
                break
    assert result["skipped"] == [(str(photo), "no answer")] and list(out.iterdir()) == []
    assert "answer over 100000 bytes, cut off" in capsys.readouterr().out
    assert sent[0] < 32 << 20, "the client kept reading past its cap"
    assert elapsed < 10


def _drip(h, data: bytes) -> None:
    """Send `data` one byte a second, until the test stops the server."""
    for byte in data:
        if h.stop.wait(1):
            return
        h.wfile.write(bytes([byte]))


def drip_body(h, photo):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b'{"predictions": ')
    _drip(h, b" " * 60)


def drip_headers(h, photo):
    h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
    _drip(h, b"a" * 60)


def silent(h, photo):
    h.stop.wait(60)


def drip_answer(h, photo):
    """A complete, valid answer, one byte a second from its middle on."""
    data = json.dumps(rows(b64(png_of(*size_of(photo))))).encode()
    h.send_response(200)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data[:len(data) // 2])
    _drip(h, data[len(data) // 2:])


@pytest.mark.parametrize("answer", [drip_body, drip_headers, silent, drip_answer],
                         ids=["drip-body", "drip-headers", "silent", "drip-valid-answer"])
def test_slow_server_ends_at_the_deadline(tmp_path, capsys, monkeypatch, photo, answer):
    monkeypatch.setattr(client, "DEADLINE_S", 2.0)
    out = tmp_path / "out"
    with Hostile(answer) as server:
        start = time.monotonic()
        result = client.request([str(photo)], server.url, str(out))
        elapsed = time.monotonic() - start
    assert elapsed < client.DEADLINE_S + 3, elapsed
    assert result["skipped"] == [(str(photo), "no answer")] and list(out.iterdir()) == []
    printed = capsys.readouterr().out
    # A silent server may hit the socket timeout (also 2 s here) before the watchdog does.
    assert "no complete answer within 2 s" in printed or (
        answer is silent and "timed out" in printed), printed


# --- the layout promises of `colorize request` --------------------------------------------


def test_out_in_the_inputs_folder_never_replaces_the_input(tmp_path):
    photo = write_rgb(tmp_path / "d" / "x.png", photo_tiles(1, 40)[0])
    original = photo.read_bytes()
    with Hostile(good) as server:
        result = client.request([str(photo)], server.url, str(tmp_path / "d"))
    assert result["written"] == [str(tmp_path / "d" / "x-2.png")]
    assert result["renamed"] == [(str(photo), str(tmp_path / "d" / "x-2.png"))]
    assert photo.read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x-2.png", "x.png"]


def test_same_names_get_distinct_outputs_from_their_own_photos(tmp_path):
    a = write_rgb(tmp_path / "a" / "x.jpg", photo_tiles(1, 40)[0])
    b = write_rgb(tmp_path / "b" / "x.jpg", photo_tiles(2, 56)[1])
    out = tmp_path / "out"
    with Hostile(good) as server:
        result = client.request([str(a), str(b)], server.url, str(out))
    assert result["written"] == [str(out / "x.png"), str(out / "x-2.png")]
    assert size_of((out / "x.png").read_bytes()) == (40, 40)
    assert size_of((out / "x-2.png").read_bytes()) == (56, 56)
    assert result["skipped"] == []


def test_folder_missing_file_fifo_and_temporaries(tmp_path, capsys):
    """A folder is taken (its images, in sorted order, under OUT/<folder>/); a missing file is
    skipped 'not found'; a FIFO is skipped 'not a file' without being opened (which would
    block); a stale temporary in --out is removed; a live one in an input folder is neither
    sent nor removed."""
    tiles = photo_tiles(3, 40)
    folder = tmp_path / "photos"
    write_rgb(folder / "b.png", tiles[0])
    write_rgb(folder / "sub" / "a.jpg", tiles[1])
    live = folder / ".c.1.tmp.png"  # pid 1 runs: another process's unfinished output
    live.write_bytes(encode_png(tiles[2]))
    out = tmp_path / "out"
    stale = out / ".x.99999999.tmp.png"  # no such pid: left by a killed run
    out.mkdir()
    stale.write_bytes(encode_png(tiles[2]))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    missing = tmp_path / "missing.png"
    done: dict = {}

    with Hostile(good) as server:
        def go():
            done["result"] = client.request([str(folder), str(missing), str(fifo)],
                                            server.url, str(out))
        worker = threading.Thread(target=go, daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "request hung on the FIFO"
    result = done["result"]
    assert result["written"] == [str(out / "photos" / "b.png"),
                                 str(out / "photos" / "sub" / "a.png")]
    assert result["skipped"] == [(str(missing), "not found"), (str(fifo), "not a file")]
    assert len(server.photos) == 2
    assert not stale.exists() and live.exists()
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "photos/b.png", "photos/sub/a.png"]
    assert f"removed {stale}" in capsys.readouterr().out


@pytest.mark.parametrize("bomb", [png_bomb, lambda: png_bomb(10000, 10000), zero_bomb,
                                  jpeg_bomb],
                         ids=["png-30000", "png-10000", "valid-png-10000", "jpeg-30000"])
def test_local_bomb_is_refused_from_its_header_and_never_sent(tmp_path, bomb):
    bomb = bomb()
    ok = write_rgb(tmp_path / "ok.png", photo_tiles(1, 40)[0])
    suffix = ".jpg" if bomb[:2] == b"\xff\xd8" else ".png"
    bad = tmp_path / f"bomb{suffix}"
    bad.write_bytes(bomb)
    out = tmp_path / "out"
    with Hostile(good) as server:
        result = client.request([str(bad), str(ok)], server.url, str(out))
    assert result["skipped"] == [(str(bad), "too_large")]
    assert result["written"] == [str(out / "ok.png")]
    assert server.photos == [ok.read_bytes()]  # the bomb never left this machine


def test_unreachable_server_is_one_line_and_exit_2(tmp_path):
    write_rgb(tmp_path / "photo.jpg", photo_tiles(1, 32)[0])
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    out = subprocess.run([str(BIN / "colorize"), "request", "photo.jpg", "--url",
                          f"http://127.0.0.1:{port}", "--out", "o"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    err = out.stderr
    assert out.returncode == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("colorize ")]
    assert errors == [err.strip().splitlines()[-1]], err  # one message, the last line
    assert errors[0].startswith("colorize request: error: ") and "cannot reach" in errors[0]
    assert elapsed < 15
    assert list((tmp_path / "o").iterdir()) == []


# --- the served model (predict/service.py), in process -------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from colorize.model.file import save_model

    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(network(head="regression", decoder_width=16), path, size=32)
    return path


@pytest.fixture(scope="module")
def service(model_file):
    from colorize.decoding import NEUTRAL
    from colorize.model.file import load_model
    from colorize.predict.service import ColorizerService

    s = ColorizerService()
    s.model, s.size = load_model(model_file)[:2]
    s.decoding = NEUTRAL
    return s


def frame(images: list) -> object:
    """The request DataFrame, with rows given as bytes (encoded) or as they are."""
    import pandas as pd

    return pd.DataFrame({"image": [b64(i) if isinstance(i, bytes) else i for i in images]})


def test_too_many_rows_is_refused_naming_the_limit(service):
    from mlflow.exceptions import MlflowException

    from colorize.predict import service as served

    photo = png_of(32, 32)
    with pytest.raises(MlflowException) as e:
        service.predict(None, served.image_frame([photo] * (served.MAX_ROWS + 1)))
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert e.value.get_http_status_code() == 400
    assert f"at most {served.MAX_ROWS}" in e.value.message
    answer = service.predict(None, served.image_frame([photo] * served.MAX_ROWS))
    assert len(answer) == served.MAX_ROWS and not answer["error"].any()


def test_row_over_the_base64_limit_is_refused_before_decoding(service, monkeypatch):
    from colorize.predict import service as served

    small, big = png_of(32, 32), encode_png(photo_tiles(1, 64)[0])
    assert len(b64(small)) < 2000 < len(b64(big))
    monkeypatch.setattr(served, "MAX_BASE64", 2000)
    answer = service.predict(None, served.image_frame([small, big, small]))
    assert answer["error"][1].startswith("too_large: ") and answer["image"][1] == ""
    for i in (0, 2):
        assert answer["error"][i] == ""
        assert size_of(base64.b64decode(answer["image"][i])) == (32, 32)


BAD_ROWS = [
    ("png-bomb-30000", png_bomb(), "too_large"),
    ("png-bomb-10000", png_bomb(10000, 10000), "too_large"),
    ("valid-png-10000", zero_bomb, "too_large"),  # built when the test runs
    ("jpeg-bomb", jpeg_bomb(), "too_large"),
    ("number", 5, "unreadable"),
    ("null", None, "unreadable"),
    ("not-base64", "@@@@ not base64", "unreadable"),
    ("arbitrary-bytes", np.random.default_rng(0).bytes(4000), "unreadable"),
    ("truncated-png", png_of(32, 32)[:60], "unreadable"),
    ("empty", b"", "empty"),
]


@pytest.mark.parametrize("row,reason", [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_bad_row_gets_its_error_and_the_others_an_answer(service, row, reason):
    row = row() if callable(row) else row
    start = time.monotonic()
    answer = service.predict(None, frame([png_of(32, 40), row, png_of(48, 32)]))
    assert time.monotonic() - start < 10
    assert answer["error"][1].split(":")[0] == reason, answer["error"][1]
    assert answer["image"][1] == ""
    assert answer["error"][0] == answer["error"][2] == ""
    assert size_of(base64.b64decode(answer["image"][0])) == (32, 40)
    assert size_of(base64.b64decode(answer["image"][2])) == (48, 32)


BAD_PARAMS = [
    ("temperature-0", {"temperature": 0}, "params.temperature"),
    ("temperature-text", {"temperature": "hot"}, "params.temperature"),
    ("temperature-nan", {"temperature": float("nan")}, "params.temperature"),
    ("temperature-bool", {"temperature": True}, "params.temperature"),
    ("prior-correction-5", {"prior_correction": 5}, "params.prior_correction"),
    ("prior-correction-negative", {"prior_correction": -1, "temperature": 0.5},
     "params.prior_correction"),
]


@pytest.mark.parametrize("params,name", [c[1:] for c in BAD_PARAMS],
                         ids=[c[0] for c in BAD_PARAMS])
def test_bad_params_are_refused_naming_the_parameter(service, params, name):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as e:
        service.predict(None, frame([png_of(32, 32)]), params)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert e.value.message.startswith(f"{name}: "), e.value.message


def test_bombs_cost_no_memory_in_the_served_model(model_file):
    """Peak memory (VmHWM) of a process that answers four bomb rows, against its peak after
    loading the model: decoding them would take gigabytes (the last one, a complete PNG,
    300 MB even for a decoder that only touches what it fills)."""
    script = textwrap.dedent(f"""
        import base64, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_hostile_serving import jpeg_bomb, png_bomb, zero_bomb
        from colorize.decoding import NEUTRAL
        from colorize.model.file import load_model
        from colorize.predict.service import ColorizerService, image_frame

        def peak():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

        s = ColorizerService()
        s.model, s.size = load_model({str(model_file)!r})[:2]
        s.decoding = NEUTRAL
        request = image_frame([png_bomb(), jpeg_bomb(), png_bomb(10000, 10000), zero_bomb()])
        before = peak()
        answer = s.predict(None, request)
        print(before, peak(), "|".join(answer["error"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, after, errors = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert [e.split(":")[0] for e in errors.split("|")] == ["too_large"] * 4
    assert int(after) - int(before) < 200 << 20, (before, after)


# --- BodyLimit over real HTTP ---------------------------------------------------------------


class Echo:
    """An ASGI app that answers the request body it read; it counts its calls."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.calls += 1
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def limited():
    """BodyLimit(Echo, 1000 bytes, the decoding's parameters) served by uvicorn on 127.0.0.1
    -> (port, echo app)."""
    import uvicorn

    from colorize.predict.serve import BodyLimit

    app = Echo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gate = BodyLimit(app, max_bytes=1000, known_params={"temperature", "prior_correction"})
    server = uvicorn.Server(uvicorn.Config(gate, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield port, app
    server.should_exit = True
    thread.join(10)


def _post(port: int, body, chunked: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"},
                     encode_chunked=chunked)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


BODIES = [
    ("500-bytes", 500, False, 200),
    ("1000-bytes-at-the-limit", 1000, False, 200),
    ("1001-bytes", 1001, False, 413),
    ("5000-bytes", 5000, False, 413),
    ("800-bytes-chunked", 800, True, 200),
    ("5000-bytes-chunked", 5000, True, 413),
]


@pytest.mark.parametrize("size,chunked,status", [c[1:] for c in BODIES],
                         ids=[c[0] for c in BODIES])
def test_body_limit(limited, size, chunked, status):
    port, app = limited
    body = bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))
    calls = app.calls
    if chunked:  # no Content-Length: only what arrives tells
        sent = (body[i:i + 100] for i in range(0, size, 100))
        got, answer = _post(port, sent, chunked=True)
    else:
        got, answer = _post(port, body)
    assert got == status, answer[:300]
    if status == 200:
        assert answer == body and app.calls == calls + 1  # intact, in one piece
    else:
        message = json.loads(answer)
        assert message["error_code"] == "REQUEST_TOO_LARGE"
        assert "exceeds 1000 bytes" in message["message"]
        assert app.calls == calls  # the app never saw it


PARAMS = [
    ("misspelled", {"temprature": 0.5}, 400, "'temprature'"),
    ("one-good-one-not", {"temperature": 0.5, "colour": "red"}, 400, "'colour'"),
    ("known", {"temperature": 0.5, "prior_correction": 0.1}, 200, ""),
    ("none", None, 200, ""),
]


@pytest.mark.parametrize("params,status,named", [c[1:] for c in PARAMS],
                         ids=[c[0] for c in PARAMS])
def test_unknown_served_params_are_a_400_naming_them(limited, params, status, named):
    port, app = limited
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [["x"]]},
                       **({"params": params} if params is not None else {})}).encode()
    calls = app.calls
    got, answer = _post(port, body)
    assert got == status, answer[:300]
    if status == 400:
        message = json.loads(answer)
        assert message["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message["message"].startswith(f"params: unknown {named}")
        assert "prior_correction, temperature" in message["message"]
        assert app.calls == calls  # the model never ran
    else:
        assert answer == body
