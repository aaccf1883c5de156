"""One training's checkpoints: the one owner of last.pt, resume, archive and their metadata.

Folder: <checkpoints>/<key>/, the key fingerprinting the settings and data (train/train.py).
  last.pt   written atomically by rank 0 after every epoch: the network (a model file's
            content, so `colorize predict --model last.pt` works), optimizer, schedule, scaler,
            history, the best epoch's weights, the MLflow run id and the fingerprint of the code
            that wrote it (colorize/code.py)
On `open`, rank 0 reads last.pt once and decides:
  - none                       a fresh start
  - unfinished, same code      resumed: training continues exactly, in the same MLflow run
  - finished                   kept as <key>-done-<time> (with its own run id) and started fresh
  - written by other code      kept as <key>-other-code-<time>, the user is told, started fresh
The other ranks wait for that decision and read the same file.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from colorize.files import atomic_path
from colorize.model.file import CHECKPOINT_FORMAT, read_state
from colorize.train import dist

LAST = "last.pt"


class Checkpoints:
    def __init__(self, folder: str | Path, code: str, epochs: int,
                 log: Callable[[str], None] = print):
        self.folder, self.code, self.epochs, self.log = Path(folder), code, epochs, log
        self.run_id: str | None = None  # the MLflow run this training logs to
        self.state: dict | None = None  # what `open` found to resume from
        self._opened = False

    @property
    def last(self) -> Path:
        return self.folder / LAST

    def open(self) -> dict | None:
        """The state to resume from, or None (every rank calls it; see the module docstring).
        Sets `run_id` to the resumed training's MLflow run. Idempotent."""
        if self._opened:
            return self.state
        state = None
        if dist.context().is_main and self.last.exists():
            state = read_state(self.last)
            reason = self._reason_to_restart(state)
            if reason:
                kept = self._archive(reason[0])
                self.log(f"{self.last} {reason[1]}: kept it as {kept}; training from scratch")
                state = None
        dist.barrier()
        if not dist.context().is_main and self.last.exists():
            state = read_state(self.last)
        self.state, self._opened = state, True
        if state is not None:
            self.run_id = state.get("run_id")
            self.log(f"resuming from {self.last} after epoch {len(state['history'])}")
        return state

    def _reason_to_restart(self, state: dict) -> tuple[str, str] | None:
        if len(state.get("history", [])) >= self.epochs:
            return "done", "holds a finished run"
        if state.get("format") != CHECKPOINT_FORMAT or state.get("code") != self.code:
            return ("other-code", f"was written by other code (code {state.get('code')}, "
                                  f"now {self.code}): it is not resumed")
        return None

    def _archive(self, label: str) -> Path:
        kept = self.folder.with_name(f"{self.folder.name}-{label}-{int(time.time())}")
        shutil.move(self.folder, kept)
        return kept

    def save(self, training: dict) -> None:
        """Write last.pt (rank 0 only) with this training's run id and code fingerprint."""
        if not dist.context().is_main:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"format": CHECKPOINT_FORMAT, "code": self.code, "run_id": self.run_id,
                 **training}
        with atomic_path(self.last) as tmp:  # a crash mid-save keeps the previous one
            torch.save(state, tmp)
