"""Browser app speed (`colorize app`): the first result and a slider move for a 1-megapixel photo.

Engine rows, in this process (predict/live.py, what the page's handlers call):
  - first result: the network's forward pass on the photo, then decoding and `compose`
  - slider move: decoding the cached output at a new temperature, then `compose`
  - + JPEG: the slider move plus encoding the preview as Gradio sends it
Page rows, a real `colorize app` process driven by headless Chromium over loopback:
  - upload -> result on screen (includes the upload and the first forward pass)
  - slider typed -> new image on screen (target: < 0.3 s), median over --moves moves
Usage: python bench/app.py [--model models/model.pt] [--moves 9]
Needs Debian's chromium (the e2e test's browser); without --model, models/model.pt.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from colorize.decoding import Decoding
from colorize.device import precision_name
from colorize.predict import live
from colorize.predict.load import resolve

SIZE = (866, 1155)  # h, w: 1.0 megapixel
BIN = Path(sys.executable).parent


def photo(path: Path) -> Path:
    from skimage import data

    rgb = cv2.resize(data.coffee(), SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def engine_rows(model: str, path: Path, repeats: int) -> list[tuple[str, float]]:
    session = live.Colorizing(resolve(model))
    shown = live.read_photo(path)
    temperatures = iter(np.linspace(0.05, 1.0, 10 * repeats))

    def first():
        shown.outputs.clear()
        session.preview(shown, Decoding(0.38, 0.0), [])

    def move():
        return session.preview(shown, Decoding(float(next(temperatures)), 0.0), [])

    def move_jpeg():
        Image.fromarray(move()).save(io.BytesIO(), "JPEG")

    first()  # warm-up
    return [("engine: first result (network + compose)", timed(first, repeats)),
            ("engine: slider move (re-decode + compose)", timed(move, repeats)),
            ("engine: slider move + JPEG encode", timed(move_jpeg, repeats))]


def page_rows(model: str, path: Path, moves: int) -> list[tuple[str, float]]:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen([BIN / "colorize", "app", "--model", model, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            start = time.perf_counter()
            page.set_input_files("#upload input[type=file]", [str(path)])
            page.wait_for_selector("#result img", timeout=120_000)
            first = time.perf_counter() - start
            times = []
            box = page.locator("#temperature input[type=number]")
            for k in range(moves):
                value = f"{0.1 + 0.08 * k:.2f}"
                start = time.perf_counter()
                box.fill(value)
                box.press("Enter")
                page.wait_for_function("t => document.querySelector('#about').innerText"
                                       ".includes(t)", arg=f"T={float(value):g} ",
                                       timeout=60_000)
                page.wait_for_function("() => { const i = document.querySelector('#result img');"
                                       " return i && i.complete; }")
                times.append(time.perf_counter() - start)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return [("page: upload -> result on screen", first),
            ("page: slider -> new image on screen (median)", statistics.median(times)),
            ("page: slider -> new image on screen (slowest)", max(times))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--moves", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = photo(Path(tmp) / "coffee.jpg")
        rows = engine_rows(args.model, path, args.repeats) + page_rows(args.model, path,
                                                                        args.moves)
    precision = precision_name(torch.device("cpu"))
    print(f"\n{SIZE[1]}x{SIZE[0]} photo, model {args.model}, {precision} on the CPU\n")
    print("| step | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
