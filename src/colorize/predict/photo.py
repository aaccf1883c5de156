"""Full-resolution colorization: the standard method.

Predict ab at the model's working size, upsample ab bilinearly to the photo's own size, clamp it,
join it with the photo's full-resolution L*, convert to RGB. Sharpness comes from L, so the output
keeps the original detail; a colour photo given as input is recoloured from its L alone.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from colorize import lab
from colorize.model.network import Colorizer, predict_ab


def working_l(rgb: np.ndarray, size: int) -> np.ndarray:
    """The photo's L* resized (aspect ignored, as in Zhang et al.) to size x size."""
    small = cv2.resize(lab.to_float_rgb(rgb), (size, size), interpolation=cv2.INTER_AREA)
    return lab.rgb_to_lab(small)[..., 0]


def compose(rgb: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """Join predicted ab (2, s, s) with the photo's own full-resolution L -> uint8 RGB."""
    h, w = rgb.shape[:2]
    L = lab.rgb_to_lab(rgb)[..., 0]
    ab = cv2.resize(np.ascontiguousarray(ab_small.transpose(1, 2, 0)), (w, h),
                    interpolation=cv2.INTER_LINEAR).reshape(h, w, 2)
    return lab.lab_to_rgb8(lab.join_l_ab(L, ab))


@torch.no_grad()
def colorize_batch(model: Colorizer, size: int, photos: list[np.ndarray], amp: str = "auto"
                   ) -> list[np.ndarray]:
    """RGB photos (any size, uint8/uint16) -> colorized uint8 RGB at each photo's own size.
    amp="auto": bf16 autocast + channels_last where the hardware supports it; "off": fp32."""
    if not photos:
        return []
    Ls = np.stack([working_l(p, size) for p in photos])
    ab = predict_ab(model, Ls, batch_size=len(photos), amp=amp)
    return [compose(p, a) for p, a in zip(photos, ab, strict=True)]
