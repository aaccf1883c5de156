"""Where photos come from: a folder tree or a tar/zip archive, read as a stream of (name, bytes).

Archives are streamed member by member (tar in stream mode), so memory stays flat in the archive's
size and nothing is extracted to disk. A file or member over `max_bytes` is never read: it comes
as an Item with its `problem` (as does a file that is not a regular file); so is an unreadable
one. The `sample` and `places205` sources are a folder and an archive that the project obtains
itself (see sample.py and download.py).
"""

from __future__ import annotations

import csv
import os
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from colorize.data.images import ImageError, read_image_file
from colorize.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif"}
SAMPLE_MANIFEST = "SOURCES.csv"


@dataclass(frozen=True)
class Item:
    name: str  # path inside the folder or archive, '/'-separated
    data: bytes
    origin: str = ""
    licence: str = ""
    problem: ImageError | None = None  # why `data` is empty: not read (too large, not a file)


class SourceError(UserError):
    """The source itself (not one image) cannot be read."""


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def iter_items(kind: str, path: str | os.PathLike, names: Iterable[str] | None = None,
               max_bytes: int | None = None) -> Iterator[Item]:
    """Yield the images of a source. With `names`, only those (in the source's own order).
    Files and members over `max_bytes` are not read (their Item says so)."""
    path = Path(path)
    wanted = set(names) if names is not None else None
    limit = max_bytes if max_bytes is not None else 1 << 62
    if kind in ("folder", "sample"):
        yield from _iter_folder(path, wanted, _read_origins(path) if kind == "sample" else {},
                                limit)
    elif kind in ("archive", "places205"):
        yield from _iter_archive(path, wanted, limit)
    else:
        raise SourceError(f"unknown source kind {kind!r}")


def _iter_folder(root: Path, wanted: set[str] | None, origins: dict[str, tuple[str, str]],
                 max_bytes: int) -> Iterator[Item]:
    if not root.is_dir():
        raise SourceError(f"{root}: folder not found (set data.path to a folder of photos)")
    if wanted is not None:  # random access: no need to walk the tree
        names = sorted(wanted)
    else:
        names = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and is_image_name(p.name)
        )
    for name in names:
        origin, licence = origins.get(name, ("", ""))
        try:
            yield Item(name, read_image_file(root / name, max_bytes), origin, licence)
        except ImageError as e:
            yield Item(name, b"", origin, licence, e)


def _too_large(name: str, size: int, max_bytes: int) -> Item:
    return Item(name, b"", problem=ImageError("too_large", f"{size} bytes exceeds {max_bytes}"))


def _iter_archive(path: Path, wanted: set[str] | None, max_bytes: int) -> Iterator[Item]:
    if not path.is_file():
        raise SourceError(f"{path}: archive not found (set data.path to a tar or zip of photos)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or not _selected(info.filename, wanted):
                    continue
                if info.file_size > max_bytes:  # the size its directory declares
                    yield _too_large(info.filename, info.file_size, max_bytes)
                    continue
                try:  # inflating stops at the limit, whatever was declared
                    with zf.open(info) as f:
                        data = f.read(max_bytes + 1)
                except Exception as e:  # a bad CRC, an encrypted or damaged member, ...
                    yield Item(info.filename, b"", problem=ImageError(
                        "unreadable", f"a damaged archive member ({type(e).__name__})"))
                    continue
                yield (Item(info.filename, data) if len(data) <= max_bytes
                       else _too_large(info.filename, len(data), max_bytes))
        return
    try:
        # 'r|*' streams: members are read in order and never all held in memory.
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if not member.isfile() or not _selected(member.name, wanted):
                    continue
                if member.size > max_bytes:
                    yield _too_large(member.name, member.size, max_bytes)
                    continue
                f = tf.extractfile(member)
                yield Item(member.name, f.read() if f else b"")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise SourceError(f"{path}: cannot read archive ({e})") from e


def _selected(name: str, wanted: set[str] | None) -> bool:
    return name in wanted if wanted is not None else is_image_name(name)


def _read_origins(root: Path) -> dict[str, tuple[str, str]]:
    manifest = root / SAMPLE_MANIFEST
    if not manifest.exists():
        return {}
    with manifest.open(newline="") as f:
        return {row["file"]: (row["origin"], row["licence"]) for row in csv.DictReader(f)}
