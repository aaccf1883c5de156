"""The downloader against a real HTTP server on loopback, serving a tar.gz the test builds."""

import hashlib
import io
import tarfile
from http.server import BaseHTTPRequestHandler

import pytest

from colorize.data.download import DownloadError, download
from colorize.data.sources import iter_items
from conftest import LoopbackServer, photo_tiles


def _archive() -> bytes:
    import cv2

    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz") as tf:
        for i, tile in enumerate(photo_tiles(6, 64)):
            blob = cv2.imencode(".jpg", tile)[1].tobytes()
            info = tarfile.TarInfo(f"testSet_resize/{i:04d}.jpg")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return bio.getvalue()


class Server(LoopbackServer):
    """Serves one blob with Range support; `mode` makes it cut the connection or fail."""

    def __init__(self, blob: bytes):
        self.blob, self.mode, self.requests = blob, "ok", []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                if server.mode == "error":
                    self.send_error(503, "Service Unavailable")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                body = server.blob[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    total = len(server.blob)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                self.end_headers()
                if server.mode == "cut":  # promise everything, send a third, hang up
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        super().__init__(Handler, "/testSetPlaces205_resize.tar.gz")


@pytest.fixture
def server():
    with Server(_archive()) as s:
        yield s


def test_normal_download_records_the_hash_and_reads_as_archive(server, tmp_path):
    dest = tmp_path / "raw" / "places.tar.gz"
    download(server.url, dest)
    assert dest.read_bytes() == server.blob
    recorded = (tmp_path / "raw" / "places.tar.gz.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(server.blob).hexdigest()
    assert len(list(iter_items("archive", dest))) == 6


def test_cut_connection_leaves_no_complete_file_and_resumes(server, tmp_path):
    dest = tmp_path / "places.tar.gz"
    server.mode = "cut"
    with pytest.raises(DownloadError, match="resume"):
        download(server.url, dest)
    assert not dest.exists()
    part = tmp_path / "places.tar.gz.part"
    assert 0 < part.stat().st_size < len(server.blob)
    server.mode = "ok"
    download(server.url, dest)
    assert server.requests[-1] == f"bytes={len(server.blob) // 3}-"
    assert dest.read_bytes() == server.blob and not part.exists()


def test_wrong_checksum_is_refused(server, tmp_path):
    dest = tmp_path / "places.tar.gz"
    (tmp_path / "places.tar.gz.sha256").write_text("0" * 64 + "  places.tar.gz\n")
    with pytest.raises(DownloadError, match="does not match the recorded"):
        download(server.url, dest)
    assert not dest.exists()
    assert (tmp_path / "places.tar.gz.corrupt").exists()


def test_pinned_hash_is_enforced_without_a_hash_file(server, tmp_path):
    dest = tmp_path / "places.tar.gz"
    actual = hashlib.sha256(server.blob).hexdigest()
    with pytest.raises(DownloadError) as error:
        download(server.url, dest, expected_sha256="0" * 64)
    assert str(error.value).startswith(
        f"places.tar.gz: SHA-256 {actual} does not match the pinned {'0' * 64}; the file was "
        f"moved to {tmp_path / 'places.tar.gz.corrupt'}.")
    assert not dest.exists() and (tmp_path / "places.tar.gz.corrupt").read_bytes() == server.blob
    download(server.url, dest, expected_sha256=actual.upper())
    assert dest.read_bytes() == server.blob
    assert not (tmp_path / "places.tar.gz.sha256").exists()  # the pin lives in the code


def test_pinned_hash_rechecks_a_file_already_in_place(server, tmp_path):
    dest = tmp_path / "places.tar.gz"
    dest.write_bytes(b"an older file")
    with pytest.raises(DownloadError, match="does not match the pinned"):
        download(server.url, dest, expected_sha256=hashlib.sha256(server.blob).hexdigest())
    assert server.requests == [] and not dest.exists()
    assert (tmp_path / "places.tar.gz.corrupt").read_bytes() == b"an older file"


def test_server_error_is_reported(server, tmp_path):
    server.mode = "error"
    with pytest.raises(DownloadError, match="HTTP 503") as error:
        download(server.url, tmp_path / "x.tar.gz")
    assert error.value.status == 503
    assert not (tmp_path / "x.tar.gz").exists()


def test_unreachable_server_is_reported(tmp_path):
    with Server(b"") as s:
        url = s.url
    with pytest.raises(DownloadError, match="cannot connect"):
        download(url, tmp_path / "x.tar.gz", timeout=5)


@pytest.mark.slow
def test_places205_source_through_dvc_stages(tmp_path):
    """The documented Places205 path: `fetch` downloads the archive (here from loopback), then
    `prepare` and `preprocess` stream it; the recorded hash guards later downloads."""
    import json

    from conftest import BIN, make_pipeline_repo, run

    with Server(_archive()) as s:
        archive = "data/raw/places205/testSetPlaces205_resize.tar.gz"
        env = make_pipeline_repo(tmp_path, data={"source": "places205", "url": s.url,
                                                 "path": archive, "val_fraction": 0.3})
        run([BIN / "dvc", "repro", "preprocess"], tmp_path, env)
    assert (tmp_path / archive).read_bytes() == s.blob
    assert (tmp_path / "data/testSetPlaces205_resize.tar.gz.sha256").exists()
    report = json.loads((tmp_path / "metrics/data.json").read_text())
    assert report["found"] == 6 and report["used"] == 6
    stats = json.loads((tmp_path / "logs/preprocess.json").read_text())
    assert stats["images"] == 6
