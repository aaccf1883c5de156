"""Debian packages fetched by URL, pinned by version and SHA-256, and unpacked in Python.

`apt-get download` works only on Debian-like systems and takes whatever version is current, so
photos taken from packages (hence the split and the results) could change silently. Here a
package is one fixed file of the Debian archive, recorded with its pool path, size and SHA-256 as
listed in the release's `Packages` index. It is downloaded from a mirror, or from
snapshot.debian.org (which keeps every version ever published) when the mirror answers 404
because the version has left it; download.py resumes, verifies the pinned hash and moves the
file into place. A `.deb` is an `ar` archive holding `debian-binary`, `control.tar.*` and
`data.tar.*`; a short `ar` reader and `tarfile` read the files from it: no apt, no dpkg, no
root, any OS.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from colorize.data.download import DownloadError, download
from colorize.data.sources import SourceError

MIRROR = "https://deb.debian.org/debian"
# A date at which every pinned version was published (bookworm 12.11's archive state).
SNAPSHOT = "https://snapshot.debian.org/archive/debian/20250520T000000Z"


@dataclass(frozen=True)
class Package:
    """One pinned .deb, as listed in Debian's Packages index, and what to take from it."""

    name: str
    version: str  # with its epoch, as in the index ("1:0.9.28-sdl2-1")
    pool_path: str  # the index's Filename: pool/main/<x>/<source>/<file>.deb
    size: int  # bytes of the .deb
    sha256: str
    licence: str
    folders: tuple[str, ...]  # folders of the package (or Qt .rcc bundles) whose images to take

    @property
    def file_name(self) -> str:
        return posixpath.basename(self.pool_path)

    @property
    def origin(self) -> str:
        return f"Debian package {self.name} {self.version}"


def fetch_deb(package: Package, cache: Path, mirror: str = MIRROR, snapshot: str = SNAPSHOT
              ) -> Path:
    """The verified .deb in `cache`: from the mirror, or from the snapshot archive when the
    mirror no longer has that version (HTTP 404/410). A partial download resumes from either."""
    dest = cache / package.file_name
    try:
        return download(f"{mirror}/{package.pool_path}", dest, expected_sha256=package.sha256)
    except DownloadError as e:
        if e.status not in (404, 410):
            raise
    try:
        return download(f"{snapshot}/{package.pool_path}", dest, expected_sha256=package.sha256)
    except DownloadError as e:
        raise DownloadError(f"{package.name} {package.version} is gone from {mirror} and the "
                            f"snapshot archive failed too ({e}); pin a version listed in the "
                            f"current Packages index", e.status) from e


def ar_members(f: BinaryIO) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of each member of the `ar` archive open in f. Plain (common) and
    GNU ('name/') member names; a .deb never needs the GNU long-name table."""
    if f.read(8) != b"!<arch>\n":
        raise SourceError(f"{getattr(f, 'name', 'file')}: not an ar archive (nor a .deb)")
    while header := f.read(60):
        if len(header) < 60 or header[58:60] != b"`\n":
            raise SourceError(f"{getattr(f, 'name', 'file')}: truncated ar archive")
        name = header[:16].decode("ascii").rstrip(" ").removesuffix("/")
        size = int(header[48:58])
        offset = f.tell()
        yield name, offset, size
        f.seek(offset + size + size % 2)  # members start on even offsets


def deb_files(deb: Path, wanted: Iterable[str]) -> dict[str, bytes]:
    """{path: bytes} of the regular files in the .deb's data tarball that are, or are inside,
    one of `wanted` (paths as 'usr/share/...'). A symbolic link among them is returned as a
    copy of the file it points to, when that file is itself wanted."""
    wanted = tuple(w.strip("/") for w in wanted)
    with deb.open("rb") as f:
        for name, offset, size in ar_members(f):
            if name.startswith("data.tar"):
                f.seek(offset)
                return _read_tar(_Slice(f, size), wanted, f"{deb.name}:{name}")
    raise SourceError(f"{deb}: no data.tar member: not a Debian package")


def _read_tar(stream: BinaryIO, wanted: tuple[str, ...], label: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:  # gz, bz2, xz (zst from 3.14)
            for member in tf:
                path = posixpath.normpath(member.name.removeprefix("./"))
                if not any(path == w or path.startswith(w + "/") for w in wanted):
                    continue
                if member.isfile():
                    files[path] = tf.extractfile(member).read()
                elif member.issym():
                    target = posixpath.join(posixpath.dirname(path), member.linkname)
                    links[path] = posixpath.normpath(target).lstrip("/")
    except (tarfile.TarError, EOFError, OSError) as e:
        hint = "; zstd needs Python 3.14+" if label.endswith(".zst") else ""
        raise SourceError(f"{label}: cannot read the data tarball ({e}){hint}") from e
    files.update({link: files[target] for link, target in links.items() if target in files})
    return files


class _Slice(io.RawIOBase):
    """The next `size` bytes of f, as a read-only stream (one ar member)."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.f.readinto(memoryview(buffer)[: self.left])
        self.left -= n
        return n
