"""The split manifest: the table `prepare` writes and every later stage reads.

One row per usable photo: its content hash (id), split, name inside the source, size, the
measures the rejection rules used, origin and licence. Kept apart from the prepare stage so
that the stages reading it do not depend on the rules that made it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from colorize.config import DataSettings

FIELDS = ["id", "split", "name", "width", "height", "colourfulness", "flat_fraction",
          "origin", "licence"]


def read_manifest(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def source_path(data: DataSettings) -> Path:
    """The folder or archive a source reads (for places205: where `fetch` downloaded it)."""
    return Path(data.path)
