"""Read the files inside a Qt binary resource bundle (`.rcc`, format versions 1-3).

Some Debian packages (gcompris-qt-data) ship their photos only inside such bundles; reading them
needs no Qt. Layout (all integers big-endian):

    header   b"qres", version u32, tree offset u32, data offset u32, names offset u32,
             and from version 3 an overall-flags u32
    tree     fixed-size nodes (14 bytes, 22 from version 2: a trailing u64 modification time),
             node 0 is the root directory:
               name offset u32, flags u16 (1 zlib, 2 directory, 4 zstd), then
               directory: child count u32, index of the first child node u32
               file:      territory u16, language u16, data offset u32
    names    at names + name offset: length u16 (UTF-16 units), hash u32, UTF-16-BE name
    data     at data + data offset: length u32, payload; a zlib payload starts with its
             uncompressed length (u32) before the zlib stream (Qt's qCompress format)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from colorize.data.sources import SourceError

ZLIB, DIRECTORY, ZSTD = 0x01, 0x02, 0x04


def rcc_files(blob: bytes, name: str = "rcc") -> Iterator[tuple[str, bytes]]:
    """Yield (path, bytes) of every file in the bundle, '/'-separated, depth first.
    `name` labels errors. zstd payloads need Python 3.14's compression.zstd (SourceError)."""
    try:
        magic, version, tree, data, names = struct.unpack_from(">4s4I", blob)
    except struct.error as e:
        raise SourceError(f"{name}: not a Qt resource bundle ({e})") from e
    if magic != b"qres" or not 1 <= version <= 3:
        raise SourceError(f"{name}: not a Qt resource bundle (magic {magic!r}, version {version})")
    node_size = 14 if version == 1 else 22

    def node_name(offset: int) -> str:
        length = struct.unpack_from(">H", blob, names + offset)[0]
        start = names + offset + 6  # after the length and the hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        name_offset, flags = struct.unpack_from(">IH", blob, tree + index * node_size)
        path = f"{prefix}{node_name(name_offset)}" if index else ""
        if flags & DIRECTORY:
            count, first = struct.unpack_from(">II", blob, tree + index * node_size + 6)
            for child in range(first, first + count):
                yield from walk(child, f"{path}/" if path else "")
        else:
            offset = struct.unpack_from(">I", blob, tree + index * node_size + 10)[0]
            size = struct.unpack_from(">I", blob, data + offset)[0]
            yield path, _payload(blob[data + offset + 4:data + offset + 4 + size], flags,
                                 f"{name}:{path}")

    try:
        yield from walk(0, "")
    except (struct.error, UnicodeDecodeError) as e:
        raise SourceError(f"{name}: truncated or corrupt Qt resource bundle ({e})") from e


def _payload(raw: bytes, flags: int, label: str) -> bytes:
    if flags & ZLIB:
        try:
            return zlib.decompress(raw[4:])  # raw[:4]: the uncompressed length
        except zlib.error as e:
            raise SourceError(f"{label}: corrupt zlib payload ({e})") from e
    if flags & ZSTD:
        try:
            from compression import zstd  # Python 3.14+
        except ImportError as e:
            raise SourceError(f"{label}: zstd-compressed; reading it needs Python 3.14+") from e
        return zstd.decompress(raw)
    return raw
