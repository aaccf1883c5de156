"""`colorize predict`: colorize photos and folders at full resolution, skipping bad files.

Output layout (relative to --out):
  - a file named on the command line   -> <out>/<file stem>.png
  - a folder named on the command line -> <out>/<folder name>/<path inside the folder>.png
    (only files with an image suffix are taken from folders; a file named explicitly is always
    tried, whatever its suffix, and the decoder decides)
When two inputs would get the same output (a/x.jpg and b/x.jpg, or pic.jpg and pic.png in one
folder; names compared case-insensitively, and an output never replaces one of the inputs), the
first in command-line order (sorted order inside a folder) keeps the name and each later one
gets the first free `<stem>-2.png`, `<stem>-3.png`, ...; the renames are printed. The same file
named twice is colorized once.

Every input that produces no output is listed with its reason (not found, no images, unreadable,
empty, too_large, ...) and returned under "skipped", so the caller can fail the run. A bad --out
is a UserError raised before any work. Memory stays bounded for scans of up to MAX_PIXELS:
photos are decoded one by one into batches capped by BATCH_PIXELS, a batch's inputs are
released before its outputs are written, and `compose` works in strips.
"""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from colorize.config import repository_decoding
from colorize.data.images import ImageError, decode
from colorize.data.sources import is_image_name
from colorize.decoding import Decoding, resolve
from colorize.errors import UserError
from colorize.imaging import save_png
from colorize.model.network import Colorizer
from colorize.predict.load import resolve as resolve_model
from colorize.predict.photo import colorize_batch

# Largest photo predict accepts (a 200 MP scan needs ~1.5 GB besides the model), independent
# of the training data's data.max_pixels.
MAX_PIXELS = 200_000_000
# Decoded pixels per batch: small photos share a batch, a huge scan goes alone.
BATCH_PIXELS = 50_000_000


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
                     for f in sorted(p.rglob("*")) if f.is_file() and is_image_name(f.name)]
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


def predict(inputs: list[str], out_dir: str, model_spec: str | None = None,
            batch_size: int = 8, amp: str = "auto", temperature: float | None = None,
            correction: float | None = None) -> dict:
    """Colorize `inputs` (files and folders) into `out_dir` (layout: see the module docstring).
    `temperature` and `correction` (the prior correction) decode a classification model; those
    that are None come from the registry version's evaluated values, else from the
    repository's params.yaml (colorize/decoding.py), else the command is refused with a message
    naming the options.

    -> {"written": [output paths], "skipped": [(input, reason)], "renamed": [(input, output)]}.
    """
    out_root = _output_folder(out_dir)
    found_model = resolve_model(model_spec)
    model, size = found_model.model, found_model.size
    decoding = None
    if model.config.head == "classification":
        decoding = resolve(temperature, correction, found_model.decoding, repository_decoding())
        if decoding is None:
            raise UserError("this model predicts a distribution of colours: choose "
                            "--temperature (1 = its mean colour, faithful but pale; smaller = "
                            "vivid) and --prior-correction (0 = as trained; 0.5 = rarer, more "
                            "saturated colours); the repository's params.yaml gives both as "
                            "defaults")
    how = (f", temperature {decoding.temperature:g}, prior correction "
           f"{decoding.prior_correction:g}" if decoding else "")
    print(f"model: {found_model.description}{how}")
    found, skipped = collect(inputs)
    jobs, renamed = unique_targets(found, out_root)
    written: list[str] = []
    bar = tqdm(total=len(jobs), desc="colorize", unit="photo")
    batch: list[tuple[Path, Path, np.ndarray]] = []
    pixels = 0
    for source, target in jobs:
        try:
            rgb = _read(source)
        except ImageError as e:
            skipped.append(Skipped(str(source), e.reason, e.detail))
            bar.update()
            continue
        n = rgb.shape[0] * rgb.shape[1]
        if batch and (len(batch) >= batch_size or pixels + n > BATCH_PIXELS):
            bar.update(_write_batch(model, size, batch, amp, decoding, out_root, written,
                                    skipped))
            pixels = 0
        batch.append((source, target, rgb))
        pixels += n
        del rgb  # the batch alone holds the photo, so it is freed when the batch is
    if batch:
        bar.update(_write_batch(model, size, batch, amp, decoding, out_root, written,
                                skipped))
    bar.close()
    print(f"colorized {len(written)} photo(s) into {out_root}; skipped {len(skipped)}")
    for s in skipped:
        print(f"  skipped {s.path}: {s.reason}" + (f" ({s.detail})" if s.detail else ""))
    for source, target in renamed:
        print(f"  renamed {source} -> {out_root / target} (its name was taken by another input)")
    return {"written": written, "skipped": [(s.path, s.reason) for s in skipped],
            "renamed": [(str(source), str(out_root / target)) for source, target in renamed]}


def _output_folder(out_dir: str) -> Path:
    """Create --out up front, so that a path that cannot hold the outputs fails before any work."""
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


def _read(path: Path) -> np.ndarray:
    """Decode one photo; every failure is an ImageError whose reason is what the user sees."""
    try:
        data = path.read_bytes()
    except OSError as e:  # e.g. deleted since it was listed, or no permission
        reason = "not found" if isinstance(e, FileNotFoundError) else "unreadable"
        raise ImageError(reason, e.strerror or str(e)) from e
    return decode(data, max_pixels=MAX_PIXELS).rgb


def _write_batch(model: Colorizer, size: int, batch: list[tuple[Path, Path, np.ndarray]],
                 amp: str, decoding: Decoding | None, out_root: Path, written: list[str],
                 skipped: list[Skipped]) -> int:
    """Colorize a batch and write its PNGs (atomically); empties the batch -> photos done.

    The decoded inputs are released before writing, so a huge scan's input, output and the
    PNG writer's BGR copy are never all in memory at once.
    """
    outputs = colorize_batch(model, size, [rgb for *_, rgb in batch], decoding, amp)
    names = [(source, target) for source, target, _ in batch]
    batch.clear()
    for (source, target), rgb in zip(names, outputs, strict=True):
        path = out_root / target
        try:
            save_png(rgb, path)
        except OSError as e:  # e.g. a file in the way of an output subfolder
            skipped.append(Skipped(str(source), "unwritable", f"{path}: {e.strerror or e}"))
        else:
            written.append(str(path))
    return len(names)
