"""Where the repository is, wherever a command runs from.

Commands started in a subfolder (or by DVC in a temporary copy for a queued experiment) must use
the repository's own store and model, never create new ones in the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def find_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the current folder) holding dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return None


def project_root() -> Path:
    """DVC_ROOT when DVC runs a stage (queued `dvc exp run` jobs in temporary copies then log to
    the same store), else the repository around the current folder, else the current folder."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    return find_root() or Path.cwd().resolve()
