"""Where a study lives, and how a dead worker's trial stops being RUNNING.

Default: an Optuna journal file (JournalFileBackend), which many processes on one machine can
append to without SQLite's locking problems. An RDB URL (postgresql://, mysql://...) is for
workers on many machines; there Optuna's own heartbeat fails stale trials. The journal storage
has no heartbeat of its own, so workers write one into their running trial's system attributes
and each worker, before each trial, fails RUNNING trials whose heartbeat is too old.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

HEARTBEAT_KEY = "colorize_heartbeat"


def is_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str, heartbeat_s: int) -> BaseStorage:
    if is_url(storage):
        return RDBStorage(storage, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s)
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class Heartbeat:
    """Context manager: stamps the trial every `every` seconds from a background thread."""

    def __init__(self, storage: BaseStorage, trial_id: int, every: float):
        self.storage, self.trial_id, self.every = storage, trial_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_KEY, time.time())
            except (RuntimeError, ValueError):  # the trial has finished meanwhile
                return
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        if not isinstance(self.storage, RDBStorage):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def fail_stale_trials(study: optuna.Study, heartbeat_s: int) -> list[int]:
    """Mark RUNNING trials without a recent heartbeat as FAIL (journal storage). Returns them."""
    if isinstance(study._storage, RDBStorage):
        return []  # Optuna does this itself for RDB storages with heartbeat_interval
    now, stale = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.system_attrs.get(HEARTBEAT_KEY, t.datetime_start.timestamp())
        if now - last > 3 * heartbeat_s:
            study._storage.set_trial_user_attr(
                t._trial_id, "fail_reason", f"worker stopped: no heartbeat for {now - last:.0f}s")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            stale.append(t.number)
    return stale
