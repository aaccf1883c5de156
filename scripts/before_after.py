"""Side-by-side picture for the README: gray input | `colorize predict` output | original.

Usage: python scripts/before_after.py ORIGINAL COLORIZED OUT.jpg [--width 960]
"""

import argparse

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original")
    parser.add_argument("colorized")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=960)
    args = parser.parse_args()
    original, colorized = cv2.imread(args.original), cv2.imread(args.colorized)
    if original is None or colorized is None or original.shape != colorized.shape:
        raise SystemExit("need two readable images of the same size")
    gray = cv2.cvtColor(cv2.cvtColor(original, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    gap = np.full((original.shape[0], max(2, original.shape[1] // 100), 3), 255, np.uint8)
    strip = np.hstack([gray, gap, colorized, gap, original])
    scale = args.width / strip.shape[1]
    strip = cv2.resize(strip, (args.width, round(strip.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    cv2.imwrite(args.out, strip, [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    main()
