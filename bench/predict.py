"""Full-resolution prediction speed: fp32 vs the fastest CPU mode, side by side in one run.

Measures colorize_batch (LAB of the full photo, resize to the working size, network, upsampling
ab, joining with the full-resolution L, back to RGB); decoding and encoding files excluded.
  - one 1920x1080 photo: median wall time over repeats (target here: <= 0.25 s)
  - a folder of 256x256 photos in batches: images/s
Usage: python bench/predict.py [--model models/model.pt] [--repeats 7] [--photos 64]
Without a trained model file it uses an untrained network of the default width (same speed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from colorize.device import precision_name
from colorize.model.network import Colorizer
from colorize.predict.load import resolve
from colorize.predict.photo import colorize_batch


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    from skimage import data

    base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()][seed % 4]
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)


def time_one(model, size, img, amp, repeats) -> float:
    colorize_batch(model, size, [img], amp)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        colorize_batch(model, size, [img], amp)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model, size, imgs, amp, batch) -> float:
    colorize_batch(model, size, imgs[:batch], amp)
    start = time.perf_counter()
    for i in range(0, len(imgs), batch):
        colorize_batch(model, size, imgs[i:i + batch], amp)
    return len(imgs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    if Path(args.model).exists():
        model, size = resolve(args.model)
        source = args.model
    else:
        model, size, source = Colorizer().eval(), 192, "untrained Colorizer(128)"
    print(f"model: {source}, working size {size}, torch threads {torch.get_num_threads()}\n")
    hd = photo(1080, 1920)
    small = [photo(256, 256, i) for i in range(args.photos)]
    device = torch.device("cpu")
    rows = []
    for amp in ("off", "auto"):
        rows.append((precision_name(device, amp), time_one(model, size, hd, amp, args.repeats),
                     throughput(model, size, small, amp, args.batch)))
    print("| mode | 1920x1080 photo (s, median) | 256x256 photos (img/s) |\n|---|---|---|")
    for name, t, ips in rows:
        print(f"| {name} | {t:.3f} | {ips:.1f} |")
    (n0, t0, i0), (n1, t1, i1) = rows
    print(f"\n{n1} vs {n0}: {t0 / t1:.2f}x faster on 1920x1080, {i1 / i0:.2f}x on 256x256; "
          f"target 1920x1080 <= 0.25 s: {'met' if min(t0, t1) <= 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
