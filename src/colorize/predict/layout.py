"""Where outputs go, shared by `colorize predict` and `colorize request`.

Output layout (relative to --out):
  - a file named on the command line   -> <out>/<file stem>.png
  - a folder named on the command line -> <out>/<folder name>/<path inside the folder>.png
    (only files with an image suffix are taken from folders, never the temporaries of an
    interrupted write; a file named explicitly is always tried, whatever its suffix, and the
    decoder decides)
When two inputs would get the same output (a/x.jpg and b/x.jpg, or pic.jpg and pic.png in one
folder; names compared case-insensitively, and an output never replaces one of the inputs), the
first in command-line order (sorted order inside a folder) keeps the name and each later one
gets the first free `<stem>-2.png`, `<stem>-3.png`, ...; the renames are printed. The same file
named twice is colorized once. Every input that produces no output is listed with its reason.
"""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path
from typing import NamedTuple

from colorize.data.sources import is_image_name
from colorize.errors import UserError
from colorize.files import is_temporary, remove_stale_temporaries


class Skipped(NamedTuple):
    path: str
    reason: str  # short word, as in the returned result
    detail: str = ""  # printed only


def collect(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[Skipped]]:
    """-> ((photo, output path relative to --out) for each distinct photo, inputs skipped).

    A file named -> `<stem>.png`; a folder named -> `<folder name>/<path inside it>.png` for
    every file with an image suffix inside it, in sorted order. The same file reached twice
    (named twice, or named and inside a named folder) is kept once, at its first occurrence.
    Output names may still collide here; `unique_targets` resolves that.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            pairs = [(f, Path(p.resolve().name) / f.relative_to(p))
                     for f in sorted(p.rglob("*"))
                     if f.is_file() and is_image_name(f.name) and not is_temporary(f.name)]
            if not pairs:
                skipped.append(Skipped(raw, "no images", "the folder holds no image files"))
        elif p.exists():
            pairs = [(p, Path(p.name))]
        else:
            skipped.append(Skipped(raw, "not found", "no such file or folder"))
            continue
        for source, rel in pairs:
            real = source.resolve()
            if real not in seen:
                seen.add(real)
                found.append((source, rel.with_suffix(".png")))
    return found, skipped


def unique_targets(found: list[tuple[Path, Path]], out_root: Path
                   ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """Give colliding outputs distinct names -> (all (photo, target), the renamed ones).

    Deterministic: the first photo claiming a name keeps it, later ones get the first
    `<stem>-<k>.png` (k = 2, 3, ...) that no photo claims as its own name, so a renamed output
    never takes the name of another photo. Names are compared case-insensitively (a collision
    on macOS or Windows is a collision everywhere), and a target that is one of the input files
    counts as taken, so colorizing into the photos' own folder never overwrites them.
    """
    def key(path: Path) -> str:
        return str(path).casefold()

    out_abs = out_root.resolve()
    inputs = {key(source.resolve()) for source, _ in found}
    own_names = {key(rel) for _, rel in found}
    used: set[str] = set()

    def free(target: Path) -> bool:
        return key(target) not in used and key(out_abs / target) not in inputs

    jobs, renamed = [], []
    for source, rel in found:
        target = rel
        if not free(rel):
            candidates = (rel.with_name(f"{rel.stem}-{k}.png") for k in count(2))
            target = next(t for t in candidates if free(t) and key(t) not in own_names)
            renamed.append((source, target))
        used.add(key(target))
        jobs.append((source, target))
    return jobs, renamed


def output_folder(out_dir: str) -> Path:
    """Create --out up front, so that a path that cannot hold the outputs fails before any work;
    remove what a killed earlier run left half-written in it."""
    root = _created(out_dir)
    for stale in remove_stale_temporaries(root):
        print(f"removed {stale} (an unfinished output of a run that was stopped)")
    return root


def _created(out_dir: str) -> Path:
    root = Path(out_dir)
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"--out {out_dir}: {blocker} is a file, not a folder; name a folder "
                        "(missing folders are created)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot create the folder ({e.strerror}); name a "
                        "folder you can write to") from e
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError(f"--out {out_dir}: the folder is not writable; name a folder you can "
                        "write to")
    return root


def report(written: list[str], skipped: list[Skipped], renamed: list[tuple[Path, Path]],
           out_root: Path, how: str = "") -> dict:
    """Print what was written, skipped (with reasons) and renamed -> the run's result."""
    print(f"colorized {len(written)} photo(s){how} into {out_root}; skipped {len(skipped)}")
    for s in skipped:
        print(f"  skipped {s.path}: {s.reason}" + (f" ({s.detail})" if s.detail else ""))
    for source, target in renamed:
        print(f"  renamed {source} -> {out_root / target} (its name was taken by another input)")
    return {"written": written, "skipped": [(s.path, s.reason) for s in skipped],
            "renamed": [(str(source), str(out_root / target)) for source, target in renamed]}
