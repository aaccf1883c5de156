"""Keep the repository's local MLflow store working when the checkout moves.

MLflow's SQLite store records absolute artifact locations (file:///<repo>/mlartifacts/...) for
experiments, runs, logged models and model versions. After `mv` of the checkout, or a copy of
mlflow.db and mlartifacts/ into a fresh clone, those point at the old folder and `models:/`
URIs no longer resolve. Before each use, `relocate` rewrites that prefix to the repository's
current location, under a file lock (a no-op when nothing moved).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from filelock import FileLock

STORE, ARTIFACTS = "mlflow.db", "mlartifacts"
# (table, column) pairs that hold artifact locations in MLflow 3's SQLite schema.
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
             ("logged_models", "artifact_location"), ("model_versions", "source"),
             ("model_versions", "storage_location"))


def recorded_root(db: Path) -> str | None:
    """The repository folder the store was last used in, as a file:// URI prefix."""
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT artifact_location FROM experiments WHERE artifact_location "
                        "LIKE ? LIMIT 1", (f"%/{ARTIFACTS}",)).fetchone()
    return row[0][: -len(ARTIFACTS) - 1] if row else None


def relocate(root: Path) -> bool:
    """Point the store's artifact locations at `root`; True when something was rewritten."""
    db = root / STORE
    if not db.is_file():
        return False
    new = root.resolve().as_uri()
    with FileLock(str(root / f".{STORE}.relocate.lock")):
        old = recorded_root(db)
        if old is None or old == new:
            return False
        with sqlite3.connect(db) as c:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for table, column in LOCATIONS:
                if table not in tables:
                    continue
                for before, after in ((old + "/", new + "/"),
                                      (old.removeprefix("file://") + "/",
                                       new.removeprefix("file://") + "/")):
                    c.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                              f"WHERE {column} LIKE ?", (after, len(before) + 1, before + "%"))
    print(f"MLflow store moved: artifact locations now under {root}")
    return True
