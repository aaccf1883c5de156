"""Full-resolution prediction speed and memory: fp32 vs the fastest CPU mode, and a huge scan.

Measures colorize_batch (working-size L, network, ab upsampling joined with the full-resolution
L in strips, back to RGB); decoding and encoding files excluded.
  - one 1920x1080 photo: median wall time over repeats (target here: <= 0.25 s)
  - a folder of 256x256 photos in batches: images/s
Then the whole `colorize predict` path in fresh processes (so nothing this process allocated
earlier counts): a normal 1920x1080 JPEG beside a valid 30000x30000 PNG decompression bomb,
which must be refused in well under a second with no more memory than the normal photo; and
one 12000x8000 JPEG (decode from disk, colorize, write the PNG): wall time and peak resident
memory (target: < 2 GiB).
Usage: python bench/predict.py [--model models/model.pt] [--repeats 7] [--photos 64] [--no-huge]
Without a trained model file it uses an untrained network of the default width (same speed).
"""

from __future__ import annotations

import argparse
import io
import statistics
import struct
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch

from colorize import config
from colorize.device import precision_name
from colorize.model.file import build, save_model
from colorize.model.network import Colorizer
from colorize.predict.load import resolve
from colorize.predict.photo import colorize_batch
from colorize.predict.predict import predict

HUGE = (8000, 12000)  # h, w: a 96 MP scan
SETTINGS = config.load(Path(__file__).resolve().parents[1] / "params.yaml")
DECODING = SETTINGS.evaluate.decoding


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    from skimage import data

    base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()][seed % 4]
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)


def time_one(model, size, img, amp, repeats) -> float:
    colorize_batch(model, size, [img], DECODING, amp)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        colorize_batch(model, size, [img], DECODING, amp)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model, size, imgs, amp, batch) -> float:
    colorize_batch(model, size, imgs[:batch], DECODING, amp)
    start = time.perf_counter()
    for i in range(0, len(imgs), batch):
        colorize_batch(model, size, imgs[i:i + batch], DECODING, amp)
    return len(imgs) / (time.perf_counter() - start)


def huge_jpeg(path: Path, h: int, w: int) -> Path:
    """An upscaled photo with sensor-like noise, so that the JPEG is as large as a real scan's."""
    img = photo(h, w)
    rng = np.random.default_rng(0)
    for y in range(0, h, 500):  # in strips: float noise for the whole image would take 1 GB
        strip = img[y:y + 500]
        noisy = strip + rng.standard_normal(strip.shape, dtype=np.float32) * 3.0
        strip[:] = np.clip(noisy, 0, 255)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _memory_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc (Linux).

    Not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's peak (exec keeps the
    high-water mark of the memory image it replaces), so it would count this bench's own work.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def _predict_in_child(jpg: str, out: str, model: str, amp: str, written: int = 1
                      ) -> tuple[float, int, int]:
    """Run in a fresh process -> (wall s of predict(), RSS before it, peak RSS), in KiB."""
    resolve(model)  # warm imports and the model file, so `base` is what any run costs
    base = _memory_kib("VmRSS")
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):  # keep the table clean
        result = predict([jpg], out, model, amp=amp)
    wall = time.perf_counter() - start
    assert len(result["written"]) == written, result
    return wall, base, _memory_kib("VmHWM")


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A fully valid 8-bit gray PNG of side x side black pixels: under 1 MB on disk, 900 MB
    decoded (a decompression bomb). Compressed row by row: the raw image never exists."""
    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def bomb_rows(model_path: str | None, model: Colorizer, size: int
              ) -> list[tuple[str, int, float, int, int]]:
    """predict() in fresh processes on the bomb (refused) and on a normal 1920x1080 photo
    -> [(what, file bytes, wall s, RSS before KiB, peak RSS KiB)]."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            model_path = str(Path(tmp) / "model.pt")
            save_model(model, model_path, size=size)
        normal = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(normal), cv2.cvtColor(photo(1080, 1920), cv2.COLOR_RGB2BGR))
        bomb = bomb_png(Path(tmp) / "bomb.png")
        for what, path, written in (("1920x1080 JPEG, colorized", normal, 1),
                                    ("30000x30000 PNG bomb, refused", bomb, 0)):
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                wall, base, peak = pool.submit(_predict_in_child, str(path),
                                               str(Path(tmp) / "out"), model_path, "auto",
                                               written).result()
            rows.append((what, path.stat().st_size, wall, base, peak))
    return rows


def huge_row(model_path: str | None, model: Colorizer, size: int, amp: str
             ) -> tuple[float, int, int, int]:
    """The whole predict path for one HUGE JPEG in a spawned process
    -> (wall s, RSS before predict KiB, peak RSS KiB, JPEG bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            model_path = str(Path(tmp) / "model.pt")
            save_model(model, model_path, size=size)
        jpg = huge_jpeg(Path(tmp) / "scan.jpg", *HUGE)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            wall, base, peak = pool.submit(_predict_in_child, str(jpg), str(Path(tmp) / "out"),
                                           model_path, amp).result()
        return wall, base, peak, jpg.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-huge", action="store_true", help="skip the 12000x8000 row")
    args = parser.parse_args()
    if Path(args.model).exists():
        found = resolve(args.model)
        model, size = found.model, found.size
        source, model_path = args.model, args.model
    else:
        model = build(SETTINGS.model.model_dump()).eval()
        size, source = SETTINGS.preprocess.size, "untrained network of params.yaml"
        model_path = None
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
    print("\n| predict() in a fresh process | file | wall (s) | peak RSS above imports + model "
          "(MiB) |\n|---|---|---|---|")
    for what, size_bytes, wall, base, peak in bomb_rows(model_path, model, size):
        print(f"| {what} | {size_bytes / 1e3:.0f} KB | {wall:.3f} | {(peak - base) / 1024:.0f} |")
    if args.no_huge:
        return
    wall, base, peak, jpeg_bytes = huge_row(model_path, model, size, "auto")
    h, w = HUGE
    gib = 1 << 20  # KiB per GiB
    print(f"\n| predict() in a fresh process ({n1}) | wall (s) | peak RSS (GiB) | "
          "RSS after imports + model (GiB) |\n|---|---|---|---|")
    print(f"| {w}x{h} JPEG ({jpeg_bytes / 1e6:.0f} MB) -> PNG: decode, colorize, write | "
          f"{wall:.1f} | {peak / gib:.2f} | {base / gib:.2f} |")
    per_pixel = (peak - base) * 1024 / (w * h)
    print(f"\npeak RSS {peak / gib:.2f} GiB for {w}x{h} ({per_pixel:.1f} bytes per pixel above "
          f"the base); target < 2 GiB: {'met' if peak < 2 * gib else 'NOT met'}")


if __name__ == "__main__":
    main()
