"""The README's docs/vivid.jpg: test photos decoded three ways by one model, beside gray and the
truth (gray | default T 0.2 A 0.55 | accurate T 0.6 A 0 | minimum expected CIEDE2000 A 0.8 |
truth). Usage: python scripts/vivid_grid.py MODEL.pt DATA_DIR/processed OUT.jpg [photos]"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from quality import Way, decode, outputs  # noqa: E402

from colorize.imaging import sample_grid  # noqa: E402
from colorize.model import bins, decoders  # noqa: E402
from colorize.model.file import load_model  # noqa: E402
from colorize.preprocess.store import LabStore  # noqa: E402

WAYS = {"default": Way("mean", 0.2, 0.55), "accurate": Way("mean", 0.6, 0.0),
        "expected A=0.8": Way("expected", 1.0, 0.8)}


def main(model_path: str, data: str, out: str, photos: int = 6) -> None:
    torch.set_grad_enabled(False)
    model, _, _ = load_model(model_path)
    labs = LabStore(Path(data) / "test").batch(0, photos)
    L, ab = np.ascontiguousarray(labs[:, 0]), np.ascontiguousarray(labs[:, 1:])
    raw = outputs(model, L, False)
    everything = torch.ones(decoders.L_BANDS, bins.num_bins(), dtype=torch.bool)
    preds = [decode(model, w, raw, None, torch.from_numpy(L)[:, None], everything).numpy()
             for w in WAYS.values()]
    grid = sample_grid(L, preds, ab, labels=("gray", *WAYS, "truth"))
    cv2.imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    main(*sys.argv[1:4], *(int(a) for a in sys.argv[4:5]))
