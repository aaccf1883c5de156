"""The `prepare` stage: collect images, reject unusable ones with a reason, write the split.

Outputs (all small text files that git or DVC can diff):
  data/interim/manifest.csv  one row per usable image: id, split, name, size, measures, origin
  data/interim/rejected.csv  one row per rejected file: name, reason, detail
  metrics/data.json          the data report: counts found / used / rejected by reason / split
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from colorize.config import DataSettings
from colorize.data.images import ImageError, decode, max_file_bytes, resize_square, to_uint8
from colorize.data.manifest import FIELDS, source_path
from colorize.data.sources import SourceError, iter_items
from colorize.data.split import content_id, split_of
from colorize.files import write_csv, write_json
from colorize.imaging import colourfulness, flat_fraction

REJECT_FIELDS = ["name", "reason", "detail"]
NEAR_DUPLICATE_LEVELS = 4.0  # mean |difference| of 32x32 gray thumbnails, in 8-bit levels


@dataclass
class PrepareResult:
    manifest: list[dict]
    rejected: list[dict]
    report: dict


def assess(data: bytes, settings: DataSettings) -> tuple[dict, str, str, np.ndarray | None]:
    """Decode and measure one image -> (measures, reason, detail, thumbnail); reason '' when
    usable; the thumbnail (32x32 gray) serves the near-duplicate check."""
    try:
        decoded = decode(data, settings.max_pixels)
    except ImageError as e:
        return {}, e.reason, e.detail, None
    rgb8 = to_uint8(decoded.rgb)
    thumb32 = cv2.resize(cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY), (32, 32),
                         interpolation=cv2.INTER_AREA)
    h, w = rgb8.shape[:2]
    thumb = resize_square(rgb8, 64) if min(h, w) >= 2 else rgb8
    m = {"width": w, "height": h, "colourfulness": round(colourfulness(thumb), 3),
         "flat_fraction": round(flat_fraction(rgb8), 4)}
    if min(h, w) < settings.min_size:
        return m, "too_small", f"{w}x{h} < data.min_size={settings.min_size}", thumb32
    if decoded.was_gray or m["colourfulness"] < settings.min_colourfulness:
        return m, "near_gray", (f"colourfulness {m['colourfulness']:.1f} < "
                                f"data.min_colourfulness={settings.min_colourfulness}"), thumb32
    if m["flat_fraction"] > settings.max_flat_fraction:
        return m, "drawing", (f"flat fraction {m['flat_fraction']:.3f} > "
                              f"data.max_flat_fraction={settings.max_flat_fraction}"), thumb32
    return m, "", "", thumb32


class NearDuplicates:
    """Re-encoded or resized copies of a photo already taken (a different file, so a different
    content hash): a 64-bit difference hash of a 9x8 thumbnail within MAX_HASH_DISTANCE bits AND
    a 32x32 gray thumbnail within NEAR_DUPLICATE_LEVELS levels on average. The hash alone also
    matches different photos (in miniplaces-11k: two sunsets over water); the pixel check tells
    them apart, and the hash keeps the pixel check to a few candidates."""

    MAX_HASH_DISTANCE = 8  # differing bits of the 64-bit hash

    def __init__(self):
        self.keys = np.zeros(1024, np.uint64)
        self.thumbs: list[tuple[str, np.ndarray]] = []

    def check(self, name: str, thumb32: np.ndarray) -> str | None:
        """The name of the photo this one copies, else None (and it is remembered)."""
        small = cv2.resize(thumb32, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
        key = np.packbits(small[:, 1:] > small[:, :-1]).view(">u8").astype(np.uint64)[0]
        n = len(self.thumbs)
        distance = np.bitwise_count(self.keys[:n] ^ key)
        close = np.flatnonzero(distance <= self.MAX_HASH_DISTANCE)
        for i in close:
            other, thumb = self.thumbs[i]
            if np.abs(thumb.astype(np.int16) - thumb32).mean() < NEAR_DUPLICATE_LEVELS:
                return other
        if n == len(self.keys):
            self.keys = np.concatenate([self.keys, np.zeros_like(self.keys)])
        self.keys[n] = key
        self.thumbs.append((name, thumb32))
        return None


def prepare(settings: DataSettings, out_dir: str | Path, report_path: str | Path
            ) -> PrepareResult:
    path, out_dir = source_path(settings), Path(out_dir)
    manifest, rejected, seen, near = [], [], {}, NearDuplicates()
    found = 0
    items = iter_items(settings.source, path, max_bytes=max_file_bytes(settings.max_pixels))
    for item in tqdm(items, desc="prepare", unit="img"):
        found += 1
        if item.problem is not None:
            rejected.append({"name": item.name, "reason": item.problem.reason,
                             "detail": item.problem.detail})
            continue
        image_id = content_id(item.data)
        if item.data and image_id in seen:
            rejected.append({"name": item.name, "reason": "duplicate",
                             "detail": f"same bytes as {seen[image_id]}"})
            continue
        measures, reason, detail, thumb = assess(item.data, settings)
        if not reason and (original := near.check(item.name, thumb)):
            reason, detail = "near_duplicate", f"a re-encoded or resized copy of {original}"
        if reason:
            rejected.append({"name": item.name, "reason": reason, "detail": detail})
            continue
        seen[image_id] = item.name
        split = split_of(image_id, settings.val_fraction, settings.test_fraction)
        if split == "train" and measures["colourfulness"] < settings.min_train_colourfulness:
            rejected.append({"name": item.name, "reason": "pale_for_training",
                             "detail": f"colourfulness {measures['colourfulness']:.1f} < "
                                       "data.min_train_colourfulness="
                                       f"{settings.min_train_colourfulness}"})
            continue
        manifest.append({"id": image_id, "split": split, "name": item.name, **measures,
                         "origin": item.origin, "licence": item.licence})
    write_csv(out_dir / "rejected.csv", REJECT_FIELDS, rejected)
    _list_rejections(rejected, out_dir)
    if not manifest:
        raise SourceError(f"{path}: no usable images among {found} found ({len(rejected)} "
                          "rejected, reasons listed above); point data.path at your photos")
    splits = Counter(row["split"] for row in manifest)
    if not splits["train"] or not splits["val"]:
        raise SourceError(f"the split has {splits['train']} train / {splits['val']} validation "
                          f"photos and needs both: add photos to {path} or change "
                          f"data.val_fraction (now {settings.val_fraction})")
    report = {
        "found": found,
        "used": len(manifest),
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        "train": splits["train"],
        "val": splits["val"],
        "test": splits["test"],
    }
    write_csv(out_dir / "manifest.csv", FIELDS, manifest)
    write_json(report_path, report)
    print(f"prepare: {found} found, {len(manifest)} used ({splits['train']} train / "
          f"{splits['val']} val / {splits['test']} test), {len(rejected)} rejected "
          f"{report['rejected_by_reason']}")
    return PrepareResult(manifest, rejected, report)


def _list_rejections(rejected: list[dict], out_dir: Path) -> None:
    for r in rejected[:20]:
        print(f"  skipped {r['name']}: {r['reason']} ({r['detail']})")
    if len(rejected) > 20:
        print(f"  ... and {len(rejected) - 20} more in {out_dir / 'rejected.csv'}")
