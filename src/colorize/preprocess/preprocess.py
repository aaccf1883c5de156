"""The `preprocess` stage: manifest -> LAB shards, in parallel worker processes, resumable.

The parent process streams the source (folder or archive) once, in manifest order, and hands
each shard's bytes to a worker; workers decode, resize and convert, and write their shard. The
serial path (workers=1) runs the same function in-process, so both give byte-identical arrays.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
from tqdm import tqdm

from colorize import lab
from colorize.config import DataSettings, PreprocessSettings
from colorize.data.images import decode, max_file_bytes, resize_square
from colorize.data.manifest import read_manifest, source_path
from colorize.data.sources import SourceError, iter_items
from colorize.data.split import SPLITS
from colorize.files import write_json
from colorize.preprocess.store import shard_name, write_index, write_shard


def convert(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """Image bytes -> (3, size, size) float16 L, a, b."""
    rgb = decode(data, max_pixels, min_side=size).rgb
    small = resize_square(lab.to_float_rgb(rgb), size)
    return lab.rgb_to_lab(small).transpose(2, 0, 1).astype(lab.STORE_DTYPE)


def exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """In a worker: exit as soon as the process that started it is gone (killed preprocess
    runs left their workers behind, each holding its shard's images)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def build_shard(path: str, blobs: list[bytes], size: int, max_pixels: int) -> int:
    arr = np.stack([convert(b, size, max_pixels) for b in blobs])
    write_shard(Path(path), arr)
    return len(blobs)


def preprocess(data: DataSettings, settings: PreprocessSettings, manifest_path: str | Path,
               out_dir: str | Path, workers: int | None = None,
               stats_path: str | Path | None = None) -> dict:
    """Convert the manifest's images into LAB shards; returns (and writes) throughput stats.
    Stats live outside out_dir so that the store's content, and its DVC hash, are deterministic."""
    rows = read_manifest(manifest_path)
    out_dir = Path(out_dir)
    workers = settings.workers if workers is None else workers
    plan: dict[str, list[list[dict]]] = {}
    for split in SPLITS:
        split_rows = [r for r in rows if r["split"] == split]
        plan[split] = [split_rows[i:i + settings.shard_size]
                       for i in range(0, len(split_rows), settings.shard_size)]
    # Which shards are already complete from an earlier (possibly interrupted) run.
    todo: dict[str, tuple[str, list[dict]]] = {}
    shards_meta: dict[str, list[dict]] = {}
    for split, shards in plan.items():
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        shards_meta[split] = []
        for n, shard in enumerate(shards):
            ids = [r["id"] for r in shard]
            name = shard_name(n, ids)
            shards_meta[split].append({"file": name, "count": len(ids), "ids": ids,
                                       "names": [r["name"] for r in shard]})
            if not (split_dir / name).exists():
                for r in shard:
                    todo[r["name"]] = (str(split_dir / name), shard)
        _remove_stale(split_dir, {m["file"] for m in shards_meta[split]})
    total = sum(len(s) for shards in plan.values() for s in shards)
    done_before = total - len(todo)
    start = time.perf_counter()
    converted = _run(data, settings, todo, workers)
    seconds = time.perf_counter() - start
    for split in plan:
        write_index(out_dir / split, settings.size, shards_meta[split])
    stats = {"images": total, "converted": converted, "reused_from_earlier_run": done_before,
             "seconds": round(seconds, 2), "workers": workers,
             "images_per_s": round(converted / seconds, 1) if converted else None}
    if stats_path:
        write_json(stats_path, stats)
    print(f"preprocess: {converted} images converted in {seconds:.1f}s "
          f"({stats['images_per_s']} img/s, {workers} workers); "
          f"{done_before} already done in shards from an earlier run")
    return stats


def _shard_batches(data: DataSettings, todo: dict[str, tuple[str, list[dict]]]
                   ) -> Iterator[tuple[str, list[bytes]]]:
    """Stream the source once and yield each shard as soon as all its images were read."""
    if not todo:
        return
    pending: dict[str, dict[str, bytes]] = {}
    items = iter_items(data.source, source_path(data), names=todo.keys(),
                       max_bytes=max_file_bytes(data.max_pixels))
    for item in items:
        if item.problem is not None:  # it was usable when prepare ran: changed since
            raise SourceError(f"{item.name}: {item.problem}; rerun `dvc repro prepare`")
        path, shard = todo[item.name]
        got = pending.setdefault(path, {})
        got[item.name] = item.data
        if len(got) == len(shard):
            yield path, [got[r["name"]] for r in shard]
            del pending[path]
    if pending:
        missing = [n for p, got in pending.items() for n in todo if todo[n][0] == p
                   and n not in got]
        raise SourceError(f"{len(missing)} images in the manifest are gone from the source, "
                          f"e.g. {missing[:5]}; rerun the prepare stage (dvc repro prepare)")


def _run(data: DataSettings, settings: PreprocessSettings,
         todo: dict[str, tuple[str, list[dict]]], workers: int) -> int:
    batches = _shard_batches(data, todo)
    args = (settings.size, data.max_pixels)
    converted = 0
    with tqdm(total=len(todo), desc="preprocess", unit="img") as bar:

        def count(n: int) -> None:
            nonlocal converted
            converted += n
            bar.update(n)

        if workers <= 1:
            for path, blobs in batches:
                count(build_shard(path, blobs, *args))
            return converted
        with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            running: set[Future] = set()
            for path, blobs in batches:
                # Bounded in-flight work: memory stays flat however large the source is.
                if len(running) >= 2 * workers:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        count(f.result())
                running.add(pool.submit(build_shard, path, blobs, *args))
            for f in running:
                count(f.result())
    return converted


def _remove_stale(split_dir: Path, keep: set[str]) -> None:
    """Shards of an older manifest, and temporary files of a write that was killed."""
    for p in split_dir.iterdir():
        if p.name not in keep and (p.name.startswith("shard-") or ".tmp" in p.name):
            p.unlink()
