"""Running a network on L* arrays: batches, device, precision, decodings. Shared by training's
sample grids, evaluation, the sweep's scoring and prediction, so all of them hand the network
tensors on its own device and get NumPy arrays back on the host, whatever the device.
"""

from __future__ import annotations

import numpy as np
import torch

from colorize import lab
from colorize.decoding import NEUTRAL, Decoding
from colorize.device import autocast
from colorize.model.network import Colorizer


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_ab(model: Colorizer, L: np.ndarray, decodings: list[Decoding | None] | None = None,
               batch_size: int = 16, amp: str = "off", hints: np.ndarray | None = None
               ) -> list[np.ndarray]:
    """L* (N, H, W) in [0, 100], H and W multiples of 8 -> for each decoding, the predicted ab
    (N, 2, H, W) float32 in ab units, from one forward pass per batch. `hints`: the hint
    channels (N, 3, H, W) of model/hints.py, for a network that takes them (none: no hints).

    amp "auto": channels_last + bf16 autocast where the device supports it (faster); "off":
    plain fp32, which evaluation uses so that metrics do not depend on the CPU. A decoding of
    None (and any decoding, for the regression head) is the neutral one.
    """
    decodings = [d or NEUTRAL for d in (decodings or [None])]
    out: list[list[np.ndarray]] = [[] for _ in decodings]
    for i in range(0, len(L), batch_size):
        y = forward(model, L[i:i + batch_size], amp,
                    None if hints is None else hints[i:i + batch_size])
        for d, parts in zip(decodings, out, strict=True):
            parts.append(decode(model, y, d))
    empty = np.zeros((0, 2, *np.shape(L)[1:]), np.float32)
    return [np.concatenate(parts) if parts else empty for parts in out]


@torch.no_grad()
def forward(model: Colorizer, L: np.ndarray, amp: str = "off", hints: np.ndarray | None = None
            ) -> torch.Tensor:
    """One batch through the network -> its raw output (logits, or normalized ab), on its
    device. Kept apart from `decode` so that a caller can decode one output many ways (the
    browser app re-decodes on every slider move without running the network again)."""
    model.eval()
    device = device_of(model)
    fmt = torch.channels_last if amp != "off" else torch.contiguous_format
    x = lab.normalize_l(torch.from_numpy(np.asarray(L, np.float32))[:, None])
    if hints is not None:
        x = torch.cat([x, torch.from_numpy(np.asarray(hints, np.float32))], 1)
    with autocast(device, amp):
        return model(x.to(device).contiguous(memory_format=fmt))


@torch.no_grad()
def decode(model: Colorizer, y: torch.Tensor, decoding: Decoding | None) -> np.ndarray:
    """A `forward` output -> ab (N, 2, H, W) float32 in ab units on the host."""
    d = decoding or NEUTRAL
    return lab.denormalize_ab(model.decode(y, d.temperature, d.prior_correction)).float().cpu(
        ).numpy()
