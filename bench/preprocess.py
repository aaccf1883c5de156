"""Preprocessing throughput: this project's path vs a seed-style path, side by side, same images.

project:    cv2.imdecode -> cv2.resize -> cv2.cvtColor(float32 RGB -> LAB) -> float16 shard (.npy)
seed-style: PIL decode -> PIL resize -> skimage.color.rgb2lab per image -> float32 array (.npy)

Both read the same encoded bytes from memory and write their arrays to a temporary folder, with 1
and 2 worker processes. Usage: python bench/preprocess.py [--source S] [--images N] [--size S]
--source miniplaces: the first N of ../shared/data/miniplaces-11k.tar (128 px Places JPEGs);
--source sample: data/raw/sample (the default data: photos of 0.3-13 megapixels).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from colorize.data.sources import iter_items
from colorize.preprocess.preprocess import build_shard

REPO = Path(__file__).resolve().parents[1]
MINIPLACES = REPO.parent / "shared" / "data" / "miniplaces-11k.tar"


def load_images(source: str, n: int) -> tuple[str, list[bytes]]:
    if source == "miniplaces":
        kind, path = "archive", MINIPLACES
    else:
        kind, path = "folder", REPO / "data" / "raw" / "sample"
    if not path.exists():
        raise SystemExit(f"{path} not found")
    blobs = []
    for item in iter_items(kind, path):
        blobs.append(item.data)
        if len(blobs) == n:
            break
    return str(path), blobs


def seed_style_shard(path: str, blobs: list[bytes], size: int, _max_pixels: int = 0) -> int:
    from PIL import Image
    from skimage.color import rgb2lab

    out = []
    for b in blobs:
        img = Image.open(io.BytesIO(b)).convert("RGB")
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
        left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
        out.append(rgb2lab(np.asarray(img)).transpose(2, 0, 1).astype(np.float32))
    np.save(path, np.stack(out))
    return len(blobs)


def lab_only(blobs: list[bytes], size: int) -> tuple[float, float]:
    """images/s of the LAB step alone, on the same decoded, resized images."""
    from skimage.color import rgb2lab

    from colorize import lab
    from colorize.data.images import decode, resize_square

    rgbs = [resize_square(decode(b).rgb, size) for b in blobs]
    out = []
    for fn in (rgb2lab, lab.rgb_to_lab):
        start = time.perf_counter()
        for rgb in rgbs:
            fn(rgb)
        out.append(len(rgbs) / (time.perf_counter() - start))
    return out[0], out[1]


def run(fn, blobs, size, workers, folder: Path, shard: int = 16) -> float:
    chunks = [blobs[i:i + shard] for i in range(0, len(blobs), shard)]
    paths = [str(folder / f"{fn.__name__}-{workers}-{i}.npy") for i in range(len(chunks))]
    start = time.perf_counter()
    if workers == 1:
        for p, c in zip(paths, chunks, strict=True):
            fn(p, c, size, 50_000_000)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(fn, paths, chunks, [size] * len(chunks), [50_000_000] * len(chunks)))
    return len(blobs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("miniplaces", "sample"), default="miniplaces")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    source, blobs = load_images(args.source, args.images)
    print(f"{len(blobs)} images from {source}, output {args.size}x{args.size}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            for name, fn in (("seed-style (PIL + skimage)", seed_style_shard),
                             ("project (OpenCV float32)", build_shard)):
                rows.append((name, workers, run(fn, blobs, args.size, workers, Path(tmp))))
    base = rows[0][2]
    print("| path | workers | images/s | vs seed-style, 1 worker |\n|---|---|---|---|")
    for name, workers, ips in rows:
        print(f"| {name} | {workers} | {ips:.1f} | {ips / base:.1f}x |")
    lab_seed, lab_ours = lab_only(blobs, args.size)
    print(f"| LAB conversion only: skimage rgb2lab | 1 | {lab_seed:.1f} | - |")
    print(f"| LAB conversion only: cv2 float32 (colorize.lab) | 1 | {lab_ours:.1f} | "
          f"{lab_ours / lab_seed:.1f}x vs rgb2lab |")
    seed2 = [r for r in rows if r[1] == 2][0][2]
    ours2 = [r for r in rows if r[1] == 2][1][2]
    ours1 = [r for r in rows if r[1] == 1][1][2]
    print(f"\nproject vs seed-style at equal workers: {ours1 / base:.1f}x (1), "
          f"{ours2 / seed2:.1f}x (2)")


if __name__ == "__main__":
    main()
