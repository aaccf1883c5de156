"""Shared fixtures: tiny real photos (tiles of the photos bundled with scikit-image)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def photo_tiles(n: int, size: int) -> list[np.ndarray]:
    """n distinct RGB uint8 tiles (size x size) cut from real colour photos."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = []
    for k in range(n):
        img = photos[k % len(photos)]
        step = k // len(photos)
        h, w = img.shape[:2]
        crop = min(h, w) // 2
        y = (step * 37) % (h - crop)
        x = (step * 53) % (w - crop)
        tile = img[y:y + crop, x:x + crop]
        tiles.append(cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA))
    return tiles


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A folder of 16 tiny real photos (48 px), in two subfolders, PNG and JPEG."""
    root = tmp_path / "photos"
    for i, tile in enumerate(photo_tiles(16, 48)):
        ext = "png" if i % 2 else "jpg"
        write_rgb(root / f"sub{i % 2}" / f"img{i:02d}.{ext}", tile)
    return root
