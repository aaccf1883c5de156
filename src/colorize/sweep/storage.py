"""Where a study lives, the lock that keeps its trial budget, and how a dead worker's trial stops
being RUNNING.

Default: an Optuna journal file (JournalFileBackend), which many processes on one machine can
append to without SQLite's locking problems. An RDB URL (postgresql://, mysql://...) is for
workers on many machines.

Heartbeats: Optuna records RDB heartbeats only inside Study.optimize, and the sweep uses ask/tell
(so that a trial is taken under the budget lock), so `Heartbeat` stamps the running trial itself:
with Optuna's own `record_heartbeat` on an RDB storage opened with `heartbeat_interval` (the
`trial_heartbeats` table, so Optuna's tools and other Optuna clients see it), and as a trial
system attribute on a journal file, which has no heartbeat of its own (Optuna 5.0's
JournalStorage has none), with an injectable clock. Before each trial every worker fails RUNNING
trials whose heartbeat is older than 3 x sweep.heartbeat_s.

Only Optuna's public API is used, on the storage we open ourselves (open_storage), never the
study's private one; trial ids come from get_study_id_from_name and
get_trial_id_from_study_id_trial_number. One exception, guarded by the Optuna version tested:
listing an RDB's stale trials without failing them (see `_stale_rdb_trial_ids`).
"""

from __future__ import annotations

import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import optuna
import sqlalchemy
from filelock import FileLock
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from colorize.config import SweepSettings
from colorize.errors import UserError

HEARTBEAT_KEY = "colorize_heartbeat"
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
GRACE = 3  # a trial is stale after GRACE x heartbeat_s without a heartbeat
TESTED_OPTUNA = "5.0"  # the Optuna minor version whose internals _stale_rdb_trial_ids relies on
Clock = Callable[[], float]  # seconds since the epoch, as time.time


def is_url(storage: str) -> bool:
    return "://" in storage


def is_rdb(storage: str) -> bool:
    """A server database shared by many machines (not SQLite, not a journal file)."""
    return is_url(storage) and not storage.startswith("sqlite")


def sqlalchemy_url(storage: str) -> str:
    """The URL with a PostgreSQL driver named. SQLAlchemy 2.1 reads a bare postgresql:// as
    psycopg 3, while psycopg2-binary is the usual (and the tested) install: take whichever of
    the two is installed, psycopg2 first. Other URLs are returned as they are."""
    import importlib.util

    scheme, _, rest = storage.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return storage
    for module in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    return storage


def redact(storage: str) -> str:
    """The storage without its password, for logs, tags and messages."""
    if not is_rdb(storage):
        return storage
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: say nothing about it
        return storage.split("://", 1)[0] + "://***"


def open_storage(storage: str, heartbeat_s: int) -> BaseStorage:
    if is_url(storage):
        with warnings.catch_warnings():  # heartbeat_interval is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return RDBStorage(sqlalchemy_url(storage), heartbeat_interval=heartbeat_s,
                                  grace_period=GRACE * heartbeat_s)
            except ImportError as e:
                raise UserError(f"sweep.storage {redact(storage)}: no database driver "
                                f"({e.__cause__ or e}); for PostgreSQL: pip install "
                                "psycopg2-binary") from None
            except sqlalchemy.exc.OperationalError as e:  # no server, wrong password, no db
                reason = str(e.orig or e).strip().splitlines()[0][:160]
                raise UserError(f"sweep.storage {redact(storage)}: cannot connect ({reason}); "
                                "start the database or fix the URL (a journal file needs "
                                "none: sweep.storage sweeps/journal.log)") from None
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@cache
def _lock_engine(url: str):
    """One engine per process and URL, without a pool: each lock is its own short session."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=NullPool)


@contextmanager
def study_lock(storage: str, study: str) -> Iterator[None]:
    """Hold the study's lock: one holder at a time among all processes that share `storage`.

    Check-then-act steps (create the tables and the study, create the MLflow parent run, enqueue
    the defaults, count the trials then ask) run under it, so concurrent workers never exceed the
    budget or create two of anything. A file lock beside a journal or SQLite file (one machine);
    a PostgreSQL advisory lock or MySQL GET_LOCK on the server (many machines), held by its own
    connection and released by the server if the worker dies. Not reentrant: never nest it."""
    if not is_rdb(storage):
        path = Path(storage.split(":///", 1)[-1] if is_url(storage) else storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_suffix(".ask.lock"))):
            yield
        return
    from sqlalchemy import text

    engine = _lock_engine(storage)
    key = zlib.crc32(f"colorize-sweep:{study}".encode())  # a bigint for pg_advisory_lock
    if engine.dialect.name == "postgresql":
        lock, unlock, arg = "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)", key
    elif engine.dialect.name in ("mysql", "mariadb"):
        lock, unlock, arg = "SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)", str(key)
    else:
        raise UserError(f"sweep.storage {redact(storage)}: {engine.dialect.name} has no "
                        "cross-machine lock; use postgresql:// or mysql:// (or a journal file)")
    # Autocommit: the session holds the lock, not a transaction left idle while trials run.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(lock), {"k": arg})
        try:
            yield
        finally:
            conn.execute(text(unlock), {"k": arg})


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    """An RDB storage opened with a heartbeat interval: Optuna's own heartbeat table."""
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def trial_id_of(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of the study's trial `number`, through Optuna's public storage API."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number)


def take_trial(study: optuna.Study, sweep: SweepSettings,
               storage: BaseStorage | None = None) -> optuna.Trial | None:
    """The next trial (an enqueued one first), or None when the study already holds
    sweep.n_trials taken trials (finished or RUNNING). Counting and asking happen under the
    study's lock, so any number of workers on any number of machines never exceed the budget.
    The first heartbeat is recorded before the lock is released: a worker that dies right after
    asking still leaves a trial that the others will fail. `storage`: the one the study was
    opened with (open_storage); opened from sweep.storage when None."""
    if storage is None:
        storage = open_storage(sweep.storage, sweep.heartbeat_s)
    with study_lock(sweep.storage, sweep.study):
        taken = study.get_trials(deepcopy=False, states=TAKEN)  # WAITING = enqueued, not run
        if len(taken) >= sweep.n_trials:
            return None
        with warnings.catch_warnings():  # "heartbeat ... used with Study.optimize": we beat
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        Heartbeat(storage, trial_id_of(storage, study, trial.number), sweep.heartbeat_s).beat()
        return trial


class Heartbeat:
    """Context manager: stamps the trial every `every` seconds from a background thread. `now`
    is the clock of a journal file's stamp; an RDB's heartbeat takes the database's time."""

    def __init__(self, storage: BaseStorage, trial_id: int, every: float, now: Clock = time.time):
        self.storage, self.trial_id, self.every, self.now = storage, trial_id, every, now
        self.optuna_heartbeat = uses_optuna_heartbeat(storage)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def beat(self) -> None:
        if self.optuna_heartbeat:
            assert isinstance(self.storage, RDBStorage)
            self.storage.record_heartbeat(self.trial_id)
        else:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_KEY, self.now())

    def _beat(self) -> None:
        while True:
            try:
                self.beat()
            except (UpdateFinishedTrialError, KeyError):  # finished (or failed) meanwhile
                return
            except Exception as e:  # e.g. the database is briefly unreachable: retry
                print(f"heartbeat of trial id {self.trial_id} not recorded: {e}")
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def fail_stale_trials(study: optuna.Study, storage: BaseStorage, heartbeat_s: int,
                      now: Clock = time.time) -> list[int]:
    """Mark RUNNING trials without a heartbeat for GRACE x heartbeat_s as FAIL, with the reason
    in the `fail_reason` user attribute. Returns their numbers (those this call failed).
    `storage`: the one the study was opened with (open_storage). `now`: the clock of a journal
    file's heartbeats (Heartbeat's); on an RDB the database's clock decides."""
    study_id = storage.get_study_id_from_name(study.study_name)
    stale: dict[int, tuple[int, str]] = {}  # trial id -> (number, reason)
    if uses_optuna_heartbeat(storage):  # RDB: Optuna's heartbeat table, the database's clock
        assert isinstance(storage, RDBStorage)
        for trial_id in _stale_rdb_trial_ids(storage, study_id):
            stale[trial_id] = (storage.get_trial(trial_id).number,
                               f"worker stopped: no heartbeat for over {GRACE * heartbeat_s}s")
    else:
        t = now()
        for trial in storage.get_all_trials(study_id, deepcopy=False,
                                            states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(HEARTBEAT_KEY, trial.datetime_start.timestamp())
            if t - last > GRACE * heartbeat_s:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                stale[trial_id] = (trial.number,
                                   f"worker stopped: no heartbeat for {t - last:.0f}s")
    failed = []
    for trial_id, (number, reason) in sorted(stale.items(), key=lambda item: item[1][0]):
        try:  # another worker may fail (or the owner finish) the same trial meanwhile
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(number)
        except UpdateFinishedTrialError:
            continue
    return failed


def _stale_rdb_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """Ids of the study's RUNNING trials whose Optuna heartbeat is older than the storage's grace
    period, by the database's clock, left RUNNING. Optuna has no public way to list them: its
    public optuna.storages.fail_stale_trials fails them at once, and a finished trial takes no
    user attribute, so the reason could not be recorded. Hence RDBStorage's own query, on the
    Optuna version it was tested with only."""
    if optuna.__version__.split(".")[:2] != TESTED_OPTUNA.split("."):
        raise UserError(f"sweep: failing a dead worker's trial on a database uses an Optuna "
                        f"internal tested with Optuna {TESTED_OPTUNA}.x only, not the installed "
                        f"{optuna.__version__}: pip install 'optuna=={TESTED_OPTUNA}.*'")
    return storage._get_stale_trial_ids(study_id)
