"""`colorize predict`: colorize photos and folders at full resolution, skipping bad files."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from colorize.data.images import ImageError, decode
from colorize.data.sources import is_image_name
from colorize.imaging import save_png
from colorize.predict.load import resolve
from colorize.predict.photo import colorize_batch


def collect(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, output path relative to --out) for every photo named or inside a named folder."""
    out = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            out += [(f, f.relative_to(p.parent)) for f in sorted(p.rglob("*"))
                    if f.is_file() and is_image_name(f.name)]
        else:
            out.append((p, Path(p.name)))
    return out


def predict(inputs: list[str], out_dir: str, model_spec: str | None = None,
            batch_size: int = 8, amp: str = "auto") -> dict:
    model, size = resolve(model_spec)
    files = collect(inputs)
    out_root = Path(out_dir)
    written, skipped = [], []
    bar = tqdm(total=len(files), desc="colorize", unit="photo")
    for start in range(0, len(files), batch_size):
        batch, photos = [], []
        for path, rel in files[start:start + batch_size]:
            try:
                photos.append(decode(path.read_bytes()).rgb)
                batch.append(rel)
            except (OSError, ImageError) as e:
                skipped.append((str(path), getattr(e, "reason", None) or str(e)))
        for rel, rgb in zip(batch, colorize_batch(model, size, photos, amp), strict=True):
            target = (out_root / rel).with_suffix(".png")
            save_png(rgb, target)
            written.append(str(target))
        bar.update(len(files[start:start + batch_size]))
    bar.close()
    print(f"colorized {len(written)} photo(s) into {out_root}; skipped {len(skipped)}")
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}")
    return {"written": written, "skipped": skipped}
