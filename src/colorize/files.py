"""Atomic writes: every file the pipeline produces goes through here.

A crash or a full disk leaves either the previous file or the new one, never half of one: the
content goes to a temporary file beside the target (unique per process, so concurrent writers
never share one), which is then renamed over the target. A process killed mid-write leaves its
temporary behind: `is_temporary` tells such files from the user's, and
`remove_stale_temporaries` deletes those whose process is gone.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# .<stem>.<pid>.tmp<suffix>: hidden, and named by the process that writes it.
_TEMPORARY = re.compile(r"^\..*\.(\d+)\.tmp(\.[^.]*)?$")


def is_temporary(name: str) -> bool:
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries under `folder` whose writing process no longer runs."""
    removed = []
    for p in Path(folder).rglob(".*.tmp*"):
        match = _TEMPORARY.match(p.name)
        if match and p.is_file() and not _running(int(match.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid can be that large
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) that replaces `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | os.PathLike, fieldnames: list[str], rows: Iterable[dict | list]
              ) -> Path:
    """Rows as dicts (keyed by fieldnames) or as lists in fieldnames' order."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        rows = list(rows)
        if rows and isinstance(rows[0], dict):
            w = csv.DictWriter(f, fieldnames=fieldnames)
            w.writeheader()
            w.writerows(rows)
        else:
            w = csv.writer(f)
            w.writerow(fieldnames)
            w.writerows(rows)
    return Path(path)
