"""The `prepare` stage: collect images, reject unusable ones with a reason, write the split.

Outputs (all small text files that git or DVC can diff):
  data/interim/manifest.csv  one row per usable image: id, split, name, size, measures, origin
  data/interim/rejected.csv  one row per rejected file: name, reason, detail
  metrics/data.json          the data report: counts found / used / rejected by reason / split
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from colorize.config import DataSettings
from colorize.data.images import ImageError, decode, resize_square, to_uint8
from colorize.data.sources import iter_items
from colorize.data.split import content_id, split_of
from colorize.imaging import colourfulness, flat_fraction

MANIFEST_FIELDS = ["id", "split", "name", "width", "height", "colourfulness", "flat_fraction",
                   "origin", "licence"]
REJECT_FIELDS = ["name", "reason", "detail"]


@dataclass
class PrepareResult:
    manifest: list[dict]
    rejected: list[dict]
    report: dict


def source_path(data: DataSettings) -> Path:
    """The folder or archive a source reads (for places205: where `fetch` downloaded it)."""
    return Path(data.path)


def assess(data: bytes, settings: DataSettings) -> tuple[dict, str, str]:
    """Decode and measure one image -> (measures, reason, detail); reason '' when usable."""
    try:
        decoded = decode(data, settings.max_pixels)
    except ImageError as e:
        return {}, e.reason, e.detail
    rgb8 = to_uint8(decoded.rgb)
    h, w = rgb8.shape[:2]
    thumb = resize_square(rgb8, 64) if min(h, w) >= 2 else rgb8
    m = {"width": w, "height": h, "colourfulness": round(colourfulness(thumb), 3),
         "flat_fraction": round(flat_fraction(rgb8), 4)}
    if min(h, w) < settings.min_size:
        return m, "too_small", f"{w}x{h} < data.min_size={settings.min_size}"
    if decoded.was_gray or m["colourfulness"] < settings.min_colourfulness:
        return m, "near_gray", (f"colourfulness {m['colourfulness']:.1f} < "
                                f"data.min_colourfulness={settings.min_colourfulness}")
    if m["flat_fraction"] > settings.max_flat_fraction:
        return m, "drawing", (f"flat fraction {m['flat_fraction']:.3f} > "
                              f"data.max_flat_fraction={settings.max_flat_fraction}")
    return m, "", ""


def prepare(settings: DataSettings, out_dir: str | Path = "data/interim",
            report_path: str | Path = "metrics/data.json") -> PrepareResult:
    path = source_path(settings)
    manifest, rejected, seen = [], [], {}
    found = 0
    for item in tqdm(iter_items(settings.source, path), desc="prepare", unit="img"):
        found += 1
        image_id = content_id(item.data)
        if item.data and image_id in seen:
            rejected.append({"name": item.name, "reason": "duplicate",
                             "detail": f"same bytes as {seen[image_id]}"})
            continue
        measures, reason, detail = assess(item.data, settings)
        if reason:
            rejected.append({"name": item.name, "reason": reason, "detail": detail})
            continue
        seen[image_id] = item.name
        manifest.append({"id": image_id, "split": split_of(image_id, settings.val_fraction),
                         "name": item.name, **measures, "origin": item.origin,
                         "licence": item.licence})
    if not manifest:
        raise RuntimeError(f"{path}: no usable images among {found} found "
                           f"({len(rejected)} rejected; see the reasons above)")
    splits = Counter(row["split"] for row in manifest)
    if not splits["train"] or not splits["val"]:
        raise RuntimeError(f"split has {splits['train']} train / {splits['val']} val images; "
                           f"adjust data.val_fraction={settings.val_fraction} or add images")
    report = {
        "found": found,
        "used": len(manifest),
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        "train": splits["train"],
        "val": splits["val"],
    }
    out_dir = Path(out_dir)
    _write_csv(out_dir / "manifest.csv", MANIFEST_FIELDS, manifest)
    _write_csv(out_dir / "rejected.csv", REJECT_FIELDS, rejected)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    print(f"prepare: {found} found, {len(manifest)} used ({splits['train']} train / "
          f"{splits['val']} val), {len(rejected)} rejected {report['rejected_by_reason']}")
    for r in rejected[:20]:
        print(f"  skipped {r['name']}: {r['reason']} ({r['detail']})")
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20} more in {out_dir / 'rejected.csv'}")
    return PrepareResult(manifest, rejected, report)


def read_manifest(path: str | Path = "data/interim/manifest.csv") -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
