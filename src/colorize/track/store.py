"""Keep the repository's local MLflow store working when the checkout moves.

MLflow's SQLite store records absolute artifact locations (file:///<repo>/mlartifacts/...) for
experiments, runs, logged models and model versions. After `mv` of the checkout, or a copy of
mlflow.db and mlartifacts/ into a fresh clone, those point at the old folder and `models:/`
URIs no longer resolve. Before each use, `relocate` rewrites that prefix to the repository's
current location, under a file lock (a no-op when nothing moved).

Only ever the repository's own SQLite file: with MLFLOW_TRACKING_URI naming anything else (a
team server, another database) nothing is read or rewritten, since a server's locations are the
server's business and a file beside the checkout is then not the store in use.

MLflow has no API for this, so it is SQL on MLflow's schema: it runs only on the schema
revision it was written for (SCHEMA_REVISION, MLflow 3.17); another revision is refused with a
message, before anything is written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from filelock import FileLock

from colorize.errors import UserError

STORE, ARTIFACTS = "mlflow.db", "mlartifacts"
# MLflow's database migration (alembic) revision the SQL below was written and tested for.
SCHEMA_REVISION = "dc11669786a5"  # MLflow 3.17
# (table, column) pairs that hold artifact locations in that schema.
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
             ("logged_models", "artifact_location"), ("model_versions", "source"),
             ("model_versions", "storage_location"))


def recorded_root(db: Path) -> str | None:
    """The repository folder the store was last used in, as a file:// URI prefix."""
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT artifact_location FROM experiments WHERE artifact_location "
                        "LIKE ? LIMIT 1", (f"%/{ARTIFACTS}",)).fetchone()
    return row[0][: -len(ARTIFACTS) - 1] if row else None


def is_this_store(uri: str, db: Path) -> bool:
    """Whether the tracking URI names the SQLite file `db` (sqlite:///<absolute path>)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return False
    path = uri.removeprefix(prefix).split("?", 1)[0]
    return Path(path).resolve() == db.resolve()


def relocate(root: Path) -> bool:
    """Point the store's artifact locations at `root`; True when something was rewritten.
    A no-op unless the store in use is root/mlflow.db."""
    db = root / STORE
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not db.is_file() or (uri and not is_this_store(uri, db)):
        return False
    new = root.resolve().as_uri()
    with FileLock(str(root / f".{STORE}.relocate.lock")):
        old = recorded_root(db)
        if old is None or old == new:
            return False
        with sqlite3.connect(db) as c:
            revision = c.execute("SELECT version_num FROM alembic_version").fetchone()
            if revision != (SCHEMA_REVISION,):
                raise UserError(
                    f"{db} was used from {old}, and its artifact locations must be rewritten "
                    f"for {new}, but its schema revision {revision and revision[0]} is not the "
                    f"one colorize's rewrite was written for ({SCHEMA_REVISION}, MLflow "
                    "3.17); use the MLflow version pinned in pyproject.toml, or move the "
                    "checkout back")
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
