"""The sample source's pinned Debian packages, fetched from a real HTTP server on loopback.

The test builds a tiny .deb itself (ar archive: debian-binary, control.tar.gz, data.tar.xz with
real photos, a symbolic link, a Qt .rcc bundle and a copyright file) and serves it as a mirror
and as a snapshot archive; apt-get and dpkg-deb are off PATH throughout.
"""

import csv
import hashlib
import io
import shutil
import struct
import tarfile
import zlib
from http.server import BaseHTTPRequestHandler

import cv2
import pytest

from colorize.data.debian import Package, ar_members
from colorize.data.download import DownloadError
from colorize.data.rcc import rcc_files
from colorize.data.sample import fetch_sample
from colorize.data.sources import SourceError
from conftest import LoopbackServer, photo_tiles

POOL = "pool/main/t/tiny/tiny-photos_1.0-1_all.deb"
PHOTOS = [cv2.imencode(ext, tile)[1].tobytes()
          for ext, tile in zip((".jpg", ".png", ".jpg"), photo_tiles(3, 40), strict=True)]
COPYRIGHT = b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"


# ---- a tiny Qt resource bundle, laid out by hand -------------------------------------------

def _rcc(version: int) -> bytes:
    """Root -> {img/ -> {a.png (zlib), b.jpg}, c.txt}; nodes in Qt's breadth-first order."""
    names, data = b"", b""

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    def blob(payload: bytes) -> int:
        nonlocal data
        offset = len(data)
        data += struct.pack(">I", len(payload)) + payload
        return offset

    def node(name_offset: int, flags: int, a: int, b: int, c: int | None = None) -> bytes:
        body = (struct.pack(">IHII", name_offset, flags, a, b) if c is None  # dir: count, first
                else struct.pack(">IHHHI", name_offset, flags, a, b, c))  # file: ids, data
        return body + (b"" if version == 1 else struct.pack(">Q", 1_700_000_000_000))

    packed = struct.pack(">I", len(PHOTOS[0])) + zlib.compress(PHOTOS[0])
    tree = (node(0, 2, 2, 1)  # root: 2 children from node 1
            + node(name("img"), 2, 2, 3)  # node 1: 2 children from node 3
            + node(name("c.txt"), 0, 0, 0, blob(b"not an image"))
            + node(name("a.png"), 1, 0, 0, blob(packed))
            + node(name("b.jpg"), 0, 0, 0, blob(PHOTOS[1])))
    header_size = 20 if version < 3 else 24
    header = struct.pack(">4sIIII", b"qres", version, header_size + len(data) + len(names),
                         header_size, header_size + len(data))
    return header + (b"" if version < 3 else struct.pack(">I", 1)) + data + names + tree


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_bundle_yields_its_files_with_zlib_payloads_unpacked(version):
    assert list(rcc_files(_rcc(version))) == [
        ("img/a.png", PHOTOS[0]), ("img/b.jpg", PHOTOS[1]), ("c.txt", b"not an image")]


def test_rcc_rejects_what_is_not_a_bundle():
    with pytest.raises(SourceError, match="x.rcc: not a Qt resource bundle"):
        list(rcc_files(b"PK\x03\x04" + bytes(20), "x.rcc"))
    with pytest.raises(SourceError, match="truncated or corrupt"):
        list(rcc_files(_rcc(2)[:-30], "x.rcc"))


# ---- a tiny .deb ---------------------------------------------------------------------------

def _tar(files: dict[str, bytes], mode: str, links: dict[str, str] | None = None) -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode=mode) as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"./{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return bio.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, content in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode()
        out += content + b"\n" * (len(content) % 2)
    return out


def _deb() -> bytes:
    data = _tar({"usr/share/tiny/photos/sea.jpg": PHOTOS[0],
                 "usr/share/tiny/photos/sub/leaf.png": PHOTOS[1],
                 "usr/share/tiny/photos/anim.gif": b"GIF89a",
                 "usr/share/tiny/photos/README.txt": b"text",
                 "usr/share/tiny/other/skip.jpg": PHOTOS[2],
                 "usr/share/tiny/rcc/pics.rcc": _rcc(3),
                 "usr/share/doc/tiny-photos/copyright": COPYRIGHT},
                "w:xz", links={"usr/share/tiny/photos/again.jpg": "sea.jpg"})
    control = _tar({"control": b"Package: tiny-photos\nVersion: 1:1.0-1\nArchitecture: all\n"},
                   "w:gz")
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control),
                ("data.tar.xz", data)])


DEB = _deb()


def _package(sha256: str = hashlib.sha256(DEB).hexdigest()) -> Package:
    return Package("tiny-photos", "1:1.0-1", POOL, len(DEB), sha256, "CC0-1.0",
                   ("usr/share/tiny/photos", "usr/share/tiny/rcc/pics.rcc"))


def test_ar_members_gives_names_offsets_and_sizes_with_padding():
    blob = _ar([("odd", b"xyz"), ("gnu/", b"12")])
    assert list(ar_members(io.BytesIO(blob))) == [("odd", 68, 3), ("gnu", 132, 2)]
    with pytest.raises(SourceError, match="not an ar archive"):
        list(ar_members(io.BytesIO(b"PK\x03\x04" + blob)))


class Archive(LoopbackServer):
    """Files by URL path on loopback, with Range support; `cut` promises all, sends a third."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut, self.requests = files, False, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                blob = server.files.get(self.path)
                if blob is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = blob[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
                self.end_headers()
                self.wfile.write(body[: len(body) // 3] if server.cut else body)
                self.close_connection = server.cut

        super().__init__(Handler)


@pytest.fixture
def no_apt(tmp_path, monkeypatch):
    """PATH holds nothing: no apt-get, no dpkg-deb (nor anything else)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("apt-get") is None and shutil.which("dpkg-deb") is None


def _fetch(server, tmp_path, package=None):
    return fetch_sample(tmp_path / "raw" / "sample", [package or _package()],
                        mirror=f"{server.url}/debian", snapshot=f"{server.url}/snapshot",
                        cache=tmp_path / "debs")


def _debian_rows(out) -> dict[str, tuple[str, str]]:
    with (out / "SOURCES.csv").open(newline="") as f:
        return {r["file"]: (r["origin"], r["licence"]) for r in csv.DictReader(f)
                if r["file"].startswith("debian/")}


def test_fetch_unpacks_the_pinned_deb_without_apt(no_apt, tmp_path, capsys):
    with Archive({f"/debian/{POOL}": DEB}) as server:
        out = _fetch(server, tmp_path)
        first = list(server.requests)
        assert _fetch(server, tmp_path) == out  # idempotent: nothing fetched again
        assert server.requests == first == [(f"/debian/{POOL}", None)]
    assert "already in" in capsys.readouterr().out
    tiny = "debian/tiny-photos"
    expected = {f"{tiny}/sea.jpg": PHOTOS[0], f"{tiny}/again.jpg": PHOTOS[0],  # the link
                f"{tiny}/sub/leaf.png": PHOTOS[1],  # from the plain folder; from the bundle:
                f"{tiny}/img/a.png": PHOTOS[0], f"{tiny}/img/b.jpg": PHOTOS[1]}
    assert _debian_rows(out) == {n: ("Debian package tiny-photos 1:1.0-1", "CC0-1.0")
                                 for n in expected}
    for name, content in expected.items():
        assert (out / name).read_bytes() == content
    assert (out / "licences/tiny-photos.copyright").read_bytes() == COPYRIGHT
    assert not (out / f"{tiny}/anim.gif").exists() and not (out / f"{tiny}/skip.jpg").exists()
    assert (out / "skimage/astronaut.png").exists()  # the wheels' photos as before
    assert (tmp_path / "debs" / "tiny-photos_1.0-1_all.deb").read_bytes() == DEB  # cached
    assert sorted(p.name for p in out.parent.iterdir()) == ["sample"]  # no temporary left


def test_a_changed_pin_replaces_the_folder(no_apt, tmp_path):
    newer = Package("tiny-photos", "1:1.0-2", POOL.replace("1.0-1", "1.0-2"), len(DEB),
                    hashlib.sha256(DEB).hexdigest(), "CC0-1.0", ("usr/share/tiny/photos",))
    with Archive({f"/debian/{POOL}": DEB, f"/debian/{newer.pool_path}": DEB}) as server:
        _fetch(server, tmp_path)
        out = _fetch(server, tmp_path, newer)
    assert set(_debian_rows(out).values()) == {("Debian package tiny-photos 1:1.0-2", "CC0-1.0")}
    assert not (out / "debian/tiny-photos/img").exists()  # the old folder's bundle photos


def test_wrong_pinned_checksum_is_refused(no_apt, tmp_path):
    with Archive({f"/debian/{POOL}": DEB}) as server, pytest.raises(DownloadError) as error:
        _fetch(server, tmp_path, _package("0" * 64))
    message = str(error.value)
    assert message.startswith("tiny-photos_1.0-1_all.deb: SHA-256 ")
    assert f"{hashlib.sha256(DEB).hexdigest()} does not match the pinned {'0' * 64}" in message
    assert not (tmp_path / "raw").exists()
    assert (tmp_path / "debs/tiny-photos_1.0-1_all.deb.corrupt").read_bytes() == DEB
    assert not (tmp_path / "debs/tiny-photos_1.0-1_all.deb").exists()


def test_version_gone_from_the_mirror_comes_from_the_snapshot(no_apt, tmp_path):
    with Archive({f"/snapshot/{POOL}": DEB}) as server:
        out = _fetch(server, tmp_path)
    assert [path for path, _ in server.requests] == [f"/debian/{POOL}", f"/snapshot/{POOL}"]
    assert (out / "debian/tiny-photos/sea.jpg").read_bytes() == PHOTOS[0]


def test_version_gone_everywhere_names_the_fix(no_apt, tmp_path):
    with Archive({}) as server, pytest.raises(DownloadError, match="pin a version listed"):
        _fetch(server, tmp_path)
    assert not (tmp_path / "raw").exists()


def test_interrupted_deb_download_resumes(no_apt, tmp_path):
    with Archive({f"/debian/{POOL}": DEB}) as server:
        server.cut = True
        with pytest.raises(DownloadError, match="run again to resume"):
            _fetch(server, tmp_path)
        assert not (tmp_path / "raw").exists()
        server.cut = False
        out = _fetch(server, tmp_path)
    assert server.requests[-1] == (f"/debian/{POOL}", f"bytes={len(DEB) // 3}-")
    assert (out / "debian/tiny-photos/sub/leaf.png").read_bytes() == PHOTOS[1]
