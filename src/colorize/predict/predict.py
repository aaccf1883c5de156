"""`colorize predict`: colorize photos and folders at full resolution, skipping bad files.

Output layout: predict/layout.py (OUT/<name>.png, OUT/<folder>/<path inside>.png, colliding
names numbered, never over an input). Every input that produces no output is listed with its
reason (not found, not a file, no images, unreadable, empty, too_large, ...) and returned under
"skipped", so the caller can fail the run. A bad --out is a UserError raised before any work.
Memory stays bounded for scans of up to MAX_PIXELS: photos are decoded one by one into batches
capped by BATCH_PIXELS, a batch's inputs are released before its outputs are written, and
`compose` works in strips. Colour hints (`--hint`, `--hints FILE.json`; model/hints.py) are
matched to photos by the path given or the file name; a hint that names no input, lies outside
its photo, or goes to a model without hint channels is a UserError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from colorize.config import repository_decoding
from colorize.data.images import ImageError, decode, max_file_bytes, read_image_file
from colorize.decoding import Decoding, resolve
from colorize.errors import UserError
from colorize.imaging import save_png
from colorize.model import hints as H
from colorize.model.network import Colorizer
from colorize.predict.layout import Skipped, collect, output_folder, report, unique_targets
from colorize.predict.load import resolve as resolve_model
from colorize.predict.photo import colorize_batch

# Largest photo predict accepts (a 200 MP scan needs ~1.5 GB besides the model), independent
# of the training data's data.max_pixels.
MAX_PIXELS = 200_000_000
# Decoded pixels per batch: small photos share a batch, a huge scan goes alone.
BATCH_PIXELS = 50_000_000


def predict(inputs: list[str], out_dir: str, model_spec: str | None = None,
            batch_size: int = 8, amp: str = "auto", temperature: float | None = None,
            correction: float | None = None,
            hints: dict[str, list[H.UserHint]] | None = None) -> dict:
    """Colorize `inputs` (files and folders) into `out_dir` (layout: see the module docstring).
    `temperature` and `correction` (the prior correction) decode a classification model; those
    that are None come from the registry version's evaluated values, else from the
    repository's params.yaml (colorize/decoding.py), else the command is refused with a message
    naming the options.

    `hints`: colour hints per photo (keyed by the path given or the file name).

    -> {"written": [output paths], "skipped": [(input, reason)], "renamed": [(input, output)]}.
    """
    out_root = output_folder(out_dir)
    found_model = resolve_model(model_spec)
    model, size = found_model.model, found_model.size
    hints = {k: v for k, v in (hints or {}).items() if v}
    if hints and not model.config.hints:
        raise UserError("this model takes no colour hints (it was trained with model.hints: "
                        "false); train one with model.hints: true, or leave out --hint/--hints")
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
    per_photo = _match_hints(hints, [source for source, _ in jobs])
    written: list[str] = []
    batch: list[tuple[Path, Path, np.ndarray]] = []
    pixels = 0
    with tqdm(total=len(jobs), desc="colorize", unit="photo") as bar:  # closed before an error
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
                                        skipped, per_photo))
                pixels = 0
            batch.append((source, target, rgb))
            pixels += n
            del rgb  # the batch alone holds the photo, so it is freed when the batch is
        if batch:
            bar.update(_write_batch(model, size, batch, amp, decoding, out_root, written,
                                    skipped, per_photo))
    return report(written, skipped, renamed, out_root)


def _match_hints(hints: dict[str, list[H.UserHint]], photos: list[Path]
                 ) -> dict[Path, list[H.UserHint]]:
    """Each photo's hints, by the path given or its file name; a key that names none of the
    photos is a UserError (a typo would otherwise silently colorize without its hints)."""
    out: dict[Path, list[H.UserHint]] = {}
    used = set()
    by_path = {Path(k): k for k in hints}  # "./a.jpg" and "a.jpg" name one photo
    for photo in photos:
        key = by_path.get(photo) or (photo.name if photo.name in hints else None)
        if key is not None:
            out[photo] = hints[key]
            used.add(key)
    missing = [k for k in hints if k not in used]
    if missing:
        raise UserError(f"hints for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
                        ": no such photo among the inputs (keys are a photo's path as given or "
                        "its file name)")
    return out


def _read(path: Path) -> np.ndarray:
    """Decode one photo; every failure is an ImageError whose reason is what the user sees."""
    return decode(read_image_file(path, max_file_bytes(MAX_PIXELS)), max_pixels=MAX_PIXELS).rgb


def _write_batch(model: Colorizer, size: int, batch: list[tuple[Path, Path, np.ndarray]],
                 amp: str, decoding: Decoding | None, out_root: Path, written: list[str],
                 skipped: list[Skipped], hints: dict[Path, list[H.UserHint]]) -> int:
    """Colorize a batch and write its PNGs (atomically); empties the batch -> photos done.

    The decoded inputs are released before writing, so a huge scan's input, output and the
    PNG writer's BGR copy are never all in memory at once.
    """
    channels = np.stack([H.user_channels(hints.get(source, []), *rgb.shape[:2], size,
                                         str(source)) for source, _, rgb in batch]
                        ) if model.config.hints else None
    outputs = colorize_batch(model, size, [rgb for *_, rgb in batch], decoding, amp, channels)
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
