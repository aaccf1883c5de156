"""The README's docs/hints.jpg: validation photos colorized by a hint model without and with 3
colour hints simulated from the truth (evaluation's hints: model/hints.py), beside the truth.
Columns: gray with the hints (their colours, outlined) | automatic (no hint) | with the 3 hints
(outlined) | truth. Usage: python scripts/hint_grid.py MODEL.pt DATA_DIR/processed OUT.jpg
[photos] [first photo]"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from colorize import lab
from colorize.decoding import Decoding
from colorize.imaging import sample_grid
from colorize.model import hints as H
from colorize.model.file import load_model
from colorize.model.inference import predict_ab
from colorize.preprocess.store import LabStore

HINTS = 3
HEADER, GAP = 16, 2  # imaging.sample_grid's layout


def main(model_path: str, data: str, out: str, photos: int = 6, first: int = 0) -> None:
    torch.set_grad_enabled(False)
    model, _, _ = load_model(model_path)
    if not model.config.hints:
        raise SystemExit(f"{model_path}: this model takes no colour hints")
    labs = LabStore(Path(data) / "val").batch(first, first + photos)
    L, ab = np.ascontiguousarray(labs[:, 0]), np.ascontiguousarray(labs[:, 1:])
    given = H.for_evaluation(ab, HINTS, first)
    point = Decoding(0.2, 0.55)
    auto, = predict_ab(model, L, [point])
    hinted, = predict_ab(model, L, [point], hints=given)
    painted = given[:, :2] * lab.AB_SCALE  # gray with the hints' colours
    grid = sample_grid(L, [auto, hinted], ab, labels=(
        f"gray + {HINTS} hints", "automatic", f"with {HINTS} hints", "truth"))
    size = L.shape[-1]
    for i in range(len(L)):
        y0 = HEADER + GAP + i * (size + GAP)
        tile = lab.lab_to_rgb8(lab.join_l_ab(L[i], painted[i]))
        grid[y0:y0 + size, :size][given[i, 2] > 0] = tile[given[i, 2] > 0]
        for column in (0, 2):
            x0 = column * (size + GAP)
            for cy, cx in _patch_boxes(given[i, 2]):
                cv2.rectangle(grid, (x0 + cx[0] - 1, y0 + cy[0] - 1),
                              (x0 + cx[1], y0 + cy[1]), (255, 255, 255), 1)
    cv2.imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def _patch_boxes(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The bounding boxes ((y0, y1), (x0, x1)) of the mask's connected patches."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8))
    boxes = []
    for k in range(1, count):
        ys, xs = np.nonzero(labels == k)
        boxes.append(((int(ys.min()), int(ys.max()) + 1), (int(xs.min()), int(xs.max()) + 1)))
    return boxes


if __name__ == "__main__":
    main(*sys.argv[1:4], *(int(a) for a in sys.argv[4:6]))
