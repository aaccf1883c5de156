"""The colorization network: ResNet-18 trunk (1-channel L input, up to layer2) + upsampling decoder.

Follows the well-known tutorial colorizer (Melas-Kyriazi 2018). With decoder_width=128 the
decoder is Conv(128->128) BN ReLU Up2, Conv(128->64) BN ReLU, Conv(64->64) BN ReLU Up2,
Conv(64->32) BN ReLU, Conv(32->2), Up2: about 0.95M parameters in all. decoder_width scales every
decoder channel count.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet18

from colorize import lab
from colorize.device import autocast


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class Colorizer(nn.Module):
    """L normalized to [-1, 1], shape (N, 1, H, W) -> ab / AB_SCALE, shape (N, 2, H, W).

    H and W must be multiples of 8 (the trunk downsamples by 8, the decoder upsamples by 8).
    """

    def __init__(self, decoder_width: int = 128):
        super().__init__()
        self.decoder_width = decoder_width
        trunk = resnet18(weights=None)  # never load weights from a hub at run time
        trunk.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # conv1, bn1, relu, maxpool, layer1, layer2 -> 128 channels at 1/8 resolution
        self.trunk = nn.Sequential(*list(trunk.children())[:6])
        w = decoder_width
        self.decoder = nn.Sequential(
            *_block(128, w), nn.Upsample(scale_factor=2),
            *_block(w, w // 2),
            *_block(w // 2, w // 2), nn.Upsample(scale_factor=2),
            *_block(w // 2, w // 4),
            nn.Conv2d(w // 4, 2, 3, padding=1),
            nn.Upsample(scale_factor=2),
        )

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.trunk(L))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict_ab(model: Colorizer, L: np.ndarray, batch_size: int = 16, amp: str = "off"
               ) -> np.ndarray:
    """L* (N, H, W) in [0, 100], H and W multiples of 8 -> predicted ab (N, 2, H, W) float32.

    amp="auto" runs channels_last + bf16 autocast where supported (faster on CPUs with bf16);
    "off" is plain fp32 (what evaluation uses, so metrics do not depend on the CPU).
    """
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if amp != "off" else torch.contiguous_format
    out = []
    for i in range(0, len(L), batch_size):
        x = torch.from_numpy(np.asarray(L[i:i + batch_size], np.float32))[:, None].to(device)
        with autocast(device, amp):
            y = model(lab.normalize_l(x).contiguous(memory_format=fmt))
        out.append(lab.denormalize_ab(y.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, *np.shape(L)[1:]), np.float32)
