"""Cold start of `colorize predict`, each case in a fresh process (what a user waits for):
  - a photo that does not exist: time to the one-line error (target <= 1 s on 2 fp32 cores)
  - one 1920x1080 photo: time to its PNG on disk (target <= 2.5 s)
  - the imports alone, for comparison: `import torch`, `import torchvision`, the predict module
Median of --repeats runs, each a new interpreter (file caches warm after the first).
Usage: python bench/startup.py [--model models/model.pt] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

BIN = Path(sys.executable).parent


def seconds(argv: list[str], repeats: int, expect: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != expect:
            raise SystemExit(f"{' '.join(map(str, argv))}: exit {proc.returncode}\n{proc.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    colorize = str(BIN / "colorize")
    with tempfile.TemporaryDirectory() as tmp:
        from skimage import data

        photo = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(photo), cv2.resize(data.astronaut(), (1920, 1080))[..., ::-1])
        rows = [
            ("python -c pass", seconds([sys.executable, "-c", "pass"], args.repeats, 0)),
            ("import torch", seconds([sys.executable, "-c", "import torch"], args.repeats, 0)),
            ("import torchvision", seconds([sys.executable, "-c", "import torchvision"],
                                           args.repeats, 0)),
            ("import colorize.predict.predict",
             seconds([sys.executable, "-c", "import colorize.predict.predict"], args.repeats,
                     0)),
            ("predict missing.jpg -> one-line error (target <= 1 s)",
             seconds([colorize, "predict", str(Path(tmp) / "missing.jpg"), "--out",
                      str(Path(tmp) / "out")], args.repeats, 2)),
            ("predict one 1920x1080 photo -> PNG (target <= 2.5 s)",
             seconds([colorize, "predict", str(photo), "--model", args.model, "--out",
                      str(Path(tmp) / "out")], args.repeats, 0)),
        ]
    print("\n| fresh process | seconds |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
