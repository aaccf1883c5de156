"""LAB arrays on disk: one folder per split, float16 shards of shape (n, 3, S, S) = L, a, b.

Shards are plain .npy files, opened with np.load(mmap_mode='r'), so training memory does not grow
with the data set. A shard's file name carries a hash of the image ids it holds: a rerun keeps
shards that are already complete and rewrites only missing or stale ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from colorize.errors import UserError
from colorize.files import atomic_path, write_text

INDEX = "index.json"


def shard_name(number: int, ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    return f"shard-{number:05d}-{digest}.npy"


def write_shard(path: Path, lab: np.ndarray) -> None:
    """Write atomically: a crash leaves a .tmp file, never a shard that looks complete."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, lab)


def write_index(split_dir: Path, size: int, shards: list[dict]) -> None:
    index = {"size": size, "count": sum(s["count"] for s in shards), "dtype": "float16",
             "layout": "N,3(L,a,b),H,W", "shards": shards}
    write_text(split_dir / INDEX, json.dumps(index, indent=1) + "\n")


class LabStore:
    """Read-only view of one split: len(store), store[i] -> (3, S, S) float16 memmap slice."""

    def __init__(self, split_dir: str | Path):
        self.dir = Path(split_dir)
        index_path = self.dir / INDEX
        if not index_path.exists():
            raise UserError(f"{index_path}: no preprocessed data (run the preprocess stage: "
                            "dvc repro preprocess)")
        self.index = json.loads(index_path.read_text())
        self.size = self.index["size"]
        self.ids = [i for s in self.index["shards"] for i in s["ids"]]
        # each photo's name in the source (stores written before names were kept: None)
        self.names = [n for s in self.index["shards"]
                      for n in (s.get("names") or [None] * s["count"])]
        self._shards = None
        self._offsets = np.cumsum([0] + [s["count"] for s in self.index["shards"]])

    def _open(self):
        # Opened lazily so that DataLoader workers each map the files themselves.
        if self._shards is None:
            self._shards = [np.load(self.dir / s["file"], mmap_mode="r")
                            for s in self.index["shards"]]
        return self._shards

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return self._open()[k][i - self._offsets[k]]

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Items start..stop-1 as one float32 array (n, 3, S, S): L, a, b."""
        return np.stack([np.asarray(self[i], np.float32) for i in range(start, stop)])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_shards"] = None
        return state
