"""torch Dataset over the LAB store, with albumentations augmentation for training."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from colorize import lab  # noqa: E402
from colorize.preprocess.store import LabStore  # noqa: E402


def train_transform(crop: int, scale_min: float) -> A.Compose:
    # Geometric only: colours must stay true. Resized crops give many views of each photo.
    return A.Compose([
        A.RandomResizedCrop(size=(crop, crop), scale=(scale_min, 1.0), ratio=(0.75, 4 / 3)),
        A.HorizontalFlip(p=0.5),
    ])


class LabDataset(Dataset):
    """Yields (L, ab) float32 tensors: L normalized (1, H, W), ab / AB_SCALE (2, H, W)."""

    def __init__(self, store: LabStore, transform: A.Compose | None = None):
        self.store = store
        self.transform = transform

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.asarray(self.store[i], dtype=np.float32).transpose(1, 2, 0)  # H, W, 3
        if self.transform is not None:
            x = self.transform(image=x)["image"]
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        return lab.normalize_l(x[:1]), lab.normalize_ab(x[1:])
