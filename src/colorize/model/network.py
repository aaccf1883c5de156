"""The colorization network: a ResNet-18 trunk on L, an upsampling decoder, and one of two heads.

trunk_depth 2 with the regression head is the well-known tutorial colorizer (Melas-Kyriazi 2018):
trunk conv1..layer2 (128 channels at 1/8 resolution), decoder Conv(128->w) BN ReLU Up2,
Conv(w->w/2) BN ReLU, Conv(w/2->w/2) BN ReLU Up2, Conv(w/2->w/4) BN ReLU, Conv(w/4->2), Up2;
about 0.95M parameters at w = 128.

trunk_depth 3 and 4 add layer3 (1/16) and layer4 (1/32): the deepest features are upsampled
and fused with each shallower stage on the way back to 1/8 (U-Net style), and layer1's features
join the decoder at 1/4, so the decoder sees scene context and fine detail.

The classification head (Zhang et al. 2016) ends in Q logits per pixel at 1/logit_stride of the
input (1/4 by default), one per in-gamut ab bin (model/bins.py); `decode` turns them into ab by
the annealed mean at a temperature and upsamples to the input size. The regression head outputs
ab directly.

Before decoding, the logits may be corrected by the ab prior p of the training split, mixed half
and half with the uniform distribution (a buffer of the model, saved with it): z - alpha log p
divides the predicted distribution by p^alpha, which
favours the rarer, saturated colours the plain prediction under-uses. Like class rebalancing in
training, but chosen at inference (alpha 0: as trained; logit adjustment, Menon et al. 2021).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from colorize import lab
from colorize.device import autocast
from colorize.model import bins

HEADS = ("regression", "classification")


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class Colorizer(nn.Module):
    """L normalized to [-1, 1], shape (N, 1, H, W) -> the head's raw output:
    regression: ab / AB_SCALE (N, 2, H, W); classification: logits (N, Q, H/2, W/2).

    H and W must be multiples of 8 (the trunk downsamples by 8, the decoder upsamples by 8).
    """

    def __init__(self, decoder_width: int = 128, head: str = "regression", trunk_depth: int = 2,
                 logit_stride: int = 4):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head {head!r} is not one of {HEADS}")
        if trunk_depth not in (2, 3, 4):
            raise ValueError(f"trunk_depth {trunk_depth} is not 2, 3 or 4")
        self.decoder_width, self.head, self.trunk_depth = decoder_width, head, trunk_depth
        # The classification head predicts at 1/logit_stride of the input (the paper: 1/4).
        self.logit_stride = 1 if head == "regression" else logit_stride
        r = resnet18(weights=None)  # never load weights from a hub at run time
        r.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # conv1, bn1, relu, maxpool, layer1, layer2 -> 128 channels at 1/8 resolution
        self.trunk = nn.Sequential(*list(r.children())[:6])
        self.deep = nn.ModuleList([r.layer3, r.layer4][:trunk_depth - 2])
        # Context path (depth 3, 4): from the deepest stage back to 1/8, fusing each stage.
        channels = [128, 256, 512][:trunk_depth - 1]
        self.fuse = nn.ModuleList(
            nn.Sequential(*_block(channels[i + 1] + channels[i], channels[i]))
            for i in reversed(range(trunk_depth - 2)))
        w = decoder_width
        skip = 64 if trunk_depth > 2 else 0  # layer1's features at 1/4
        out = ([nn.Conv2d(w // 4, 2, 3, padding=1), nn.Upsample(scale_factor=2)]
               if head == "regression" else [nn.Conv2d(w // 4, bins.num_bins(), 1)])
        half = [nn.Upsample(scale_factor=2)] if self.logit_stride < 4 else []
        self.decoder = nn.Sequential(
            *_block(128, w), nn.Upsample(scale_factor=2),
            *_block(w + skip, w // 2),
            *_block(w // 2, w // 2), *half,
            *_block(w // 2, w // 4),
            *out,
        )
        if head == "classification":  # uniform until the trainer sets the training prior
            self.register_buffer("log_prior", torch.full((bins.num_bins(),),
                                                         -float(np.log(bins.num_bins()))))

    def set_prior(self, prior: np.ndarray) -> None:
        """The training split's ab prior, used by the prior correction at inference, mixed
        with the uniform distribution (bins.CORRECTION_UNIFORM): with the raw prior, colours
        that a small training split never showed (p ~ 1e-18) would get boosts of tens of nats
        and swamp every photo."""
        mixed = bins.with_uniform(np.asarray(prior, np.float64), bins.CORRECTION_UNIFORM)
        self.log_prior.copy_(torch.log(torch.as_tensor(mixed)))

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        if self.trunk_depth == 2:
            return self.decoder(self.trunk(L))
        f1 = self.trunk[:5](L)  # conv1..layer1: 64 channels at 1/4
        feats = [self.trunk[5](f1)]
        for stage in self.deep:
            feats.append(stage(feats[-1]))
        x = feats.pop()
        for fuse in self.fuse:
            skip = feats.pop()
            x = fuse(torch.cat([F.interpolate(x, size=skip.shape[-2:]), skip], 1))
        x = self.decoder[:4](x)  # block at 1/8, Up2 -> 1/4
        return self.decoder[4:](torch.cat([x, f1], 1))

    def decode(self, out: torch.Tensor, temperature: float | torch.Tensor = 1.0,
               correction: float | torch.Tensor = 0.0) -> torch.Tensor:
        """The head's raw output -> ab / AB_SCALE at the input's resolution. Temperature and
        prior correction may be one-element tensors (inputs of an exported graph)."""
        if self.head == "regression":
            return out.float()
        logits = out.float() - correction * self.log_prior.reshape(1, -1, 1, 1)
        ab = bins.annealed_mean(logits, temperature) / lab.AB_SCALE
        return F.interpolate(ab, scale_factor=self.logit_stride, mode="bilinear",
                             align_corners=False)


class Decoded(nn.Module):
    """Network + decoding as one module, L -> ab / AB_SCALE: what is exported to ONNX and
    logged with MLflow's torch flavour. Temperature and prior correction are inputs of the
    classification graph (one-element tensors), so they stay choices at inference."""

    def __init__(self, net: Colorizer):
        super().__init__()
        self.net = net

    def forward(self, L: torch.Tensor, temperature: torch.Tensor | None = None,
                correction: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.decode(self.net(L), temperature, correction)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict_ab(model: Colorizer, L: np.ndarray, batch_size: int = 16, amp: str = "off",
               temperature: float = 1.0, correction: float = 0.0) -> np.ndarray:
    """L* (N, H, W) in [0, 100], H and W multiples of 8 -> predicted ab (N, 2, H, W) float32.

    amp="auto" runs channels_last + bf16 autocast where supported (faster on CPUs with bf16);
    "off" is plain fp32 (what evaluation uses, so metrics do not depend on the CPU).
    `temperature` (annealed-mean T) and `correction` (prior correction alpha) decode the
    classification head; regression ignores them.
    """
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if amp != "off" else torch.contiguous_format
    out = []
    for i in range(0, len(L), batch_size):
        x = torch.from_numpy(np.asarray(L[i:i + batch_size], np.float32))[:, None].to(device)
        with autocast(device, amp):
            y = model(lab.normalize_l(x).contiguous(memory_format=fmt))
        out.append(lab.denormalize_ab(model.decode(y, temperature, correction)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, *np.shape(L)[1:]), np.float32)
