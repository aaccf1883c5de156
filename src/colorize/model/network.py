"""The colorization network, built from params.yaml's `model` section, with named parts.

    trunk     ResNet-18 on one channel (L), or four with model.hints (L, then the hint
              channels of model/hints.py: ab and mask; zeros when none are given): conv1,
              bn1, relu, maxpool, then its stages layer1 (64 channels at 1/4), layer2 (128
              at 1/8) and, with model.trunk_depth 3 and 4, layer3 (256 at 1/16) and layer4
              (512 at 1/32). Random initialisation: torchvision's resnet18(weights=None)
              (never weights from a hub), whose stages are then assigned to this file's
              copy of their structure (BasicBlock). A network built on the meta device,
              whose weights follow (model/file.py), needs no initialisation and so no
              torchvision: `colorize predict` starts about 2 s sooner without importing it.
    context   (trunk_depth 3, 4) from the deepest stage back to 1/8: each fusion upsamples the
              deeper features and merges them with the next shallower stage (U-Net style);
              layer1's features then join the decoder at 1/4.
    decoder   four Conv-BN-ReLU blocks with model.decoder_width w channels narrowing to w/4:
              block1 (w, at 1/8), upsample x2, block2 (w/2, at 1/4), block3 (w/2), then for
              outputs finer than 1/4 an upsample x2, block4 (w/4).
    global    (model.global_context) Iizuka et al. 2016's global features: two stride-2
              blocks on the 1/8 features, averaged over the image into one 256-vector (`pool`'s
              output, which the optional scene classifier of training reads), concatenated to
              every position at 1/8 and fused by a 1x1 block before the decoder.
    head      regression: a 3x3 conv to ab / AB_SCALE at 1/2, upsampled x2 to the input size.
              classification (Zhang et al. 2016): a 1x1 conv to one logit per in-gamut ab bin
              (Q = 262, model/bins.py) at 1/model.logit_stride of the input (4: the paper; 2).

trunk_depth 2 with the regression head is the tutorial colorizer (Melas-Kyriazi 2018), about
0.95M parameters at w = 128.

`decode` turns the head's output into ab at the input size. For the classification head that
is the annealed mean at a temperature after the prior correction (colorize/decoding.py): the
logits minus A log p~, where p~ is the training split's ab prior mixed with 20% of the uniform
distribution (bins.CORRECTION_UNIFORM), a buffer saved with the model. Running the network on
photos (devices, batches, precision) is model/inference.py's job.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorize import lab
from colorize.config import ModelSettings
from colorize.model import bins, hints

TRUNK_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}


class ConvBlock(nn.Module):
    """k x k conv (no bias), batch norm, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2,
                              bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: the same names, parameters and operations in the same
    order (tests/test_model.py checks the outputs bit for bit)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # after, as torchvision:
        # the order of autograd's gradient sums, so training stays bit-identical
        return self.relu(out)


def resnet18_stage(c_in: int, c_out: int) -> nn.Sequential:
    """One of ResNet-18's stages: two BasicBlocks, the first with stride 2 unless it is the
    first stage (64 -> 64)."""
    stride = 1 if c_in == c_out else 2
    return nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out))


class Trunk(nn.Module):
    """ResNet-18's stem and its first `depth` stages; forward -> each stage's features."""

    def __init__(self, depth: int, channels: int = 1):
        super().__init__()
        self.stages = [f"layer{i}" for i in range(1, depth + 1)]
        widths = [64, *(TRUNK_CHANNELS[name] for name in self.stages)]
        initialise = torch.get_default_device().type != "meta"
        if initialise:  # torchvision's initialisation, drawn before conv1's as it always was
            from torchvision.models import resnet18

            r = resnet18(weights=None)  # never load weights from a hub at run time
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.device("meta"):  # the structure; the weights are assigned below or later
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            for name, c_in, c_out in zip(self.stages, widths[:-1], widths[1:], strict=True):
                self.add_module(name, resnet18_stage(c_in, c_out))
        if initialise:
            for name in ("bn1", *self.stages):
                getattr(self, name).load_state_dict(getattr(r, name).state_dict(), assign=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in self.stages:
            x = features[name] = getattr(self, name)(x)
        return features


class ContextPath(nn.Module):
    """From the deepest stage back to layer2 (1/8): fuse[s] merges the deeper result,
    upsampled, with stage s's features."""

    def __init__(self, stages: list[str]):
        super().__init__()
        self.fuse = nn.ModuleDict()
        for deeper, shallower in reversed(list(zip(stages[2:], stages[1:-1], strict=True))):
            c = TRUNK_CHANNELS[shallower]
            self.fuse[shallower] = ConvBlock(TRUNK_CHANNELS[deeper] + c, c)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[next(reversed(features))]  # the deepest stage
        for stage, fuse in self.fuse.items():
            skip = features[stage]
            x = fuse(torch.cat([F.interpolate(x, size=skip.shape[-2:]), skip], 1))
        return x


class GlobalContext(nn.Module):
    """The 1/8 features (128 channels) with one image-wide vector fused into every position.
    Pooling by the mean makes the vector independent of the photo's size."""

    CHANNELS = 256

    def __init__(self, channels: int = 128):
        super().__init__()
        c = self.CHANNELS
        self.pool = nn.Sequential(ConvBlock(channels, c, stride=2), ConvBlock(c, c, stride=2),
                                  nn.AdaptiveAvgPool2d(1))  # (N, c, 1, 1)
        self.fuse = ConvBlock(channels + c, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vector = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.fuse(torch.cat([x, vector], 1))


class Decoder(nn.Module):
    """128 channels at 1/8 (+ layer1's 64 at 1/4 when `skip`) -> w/4 channels at 1/stride."""

    def __init__(self, width: int, skip: bool, stride: int):
        super().__init__()
        w = width
        self.block1 = ConvBlock(128, w)
        self.block2 = ConvBlock(w + (TRUNK_CHANNELS["layer1"] if skip else 0), w // 2)
        self.block3 = ConvBlock(w // 2, w // 2)
        self.block4 = ConvBlock(w // 2, w // 4)
        self.upsample_late = stride < 4  # outputs at 1/2: one more x2 before block4

    def forward(self, x: torch.Tensor, layer1: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(self.block1(x), scale_factor=2)  # 1/8 -> 1/4
        if layer1 is not None:
            x = torch.cat([x, layer1], 1)
        x = self.block3(self.block2(x))
        if self.upsample_late:
            x = F.interpolate(x, scale_factor=2)  # 1/4 -> 1/2
        return self.block4(x)


class Colorizer(nn.Module):
    """L normalized to [-1, 1], shape (N, 1, H, W), with model.hints optionally followed by
    the hint channels (N, 1 + hints.CHANNELS, H, W) -> the head's raw output:
    regression: ab / AB_SCALE (N, 2, H, W); classification: logits (N, Q, H/s, W/s) with
    s = model.logit_stride. H and W must be multiples of 8 (the trunk downsamples by 8)."""

    def __init__(self, config: ModelSettings):
        super().__init__()
        self.config = config
        regression = config.head == "regression"
        # The decoder's output stride: 1/2 for regression (its head upsamples once more).
        stride = 2 if regression else config.logit_stride
        self.trunk = Trunk(config.trunk_depth, 1 + (hints.CHANNELS if config.hints else 0))
        self.context = ContextPath(self.trunk.stages) if config.trunk_depth > 2 else None
        w4 = config.decoder_width // 4
        # Created before the decoder (the random initialisation of format-2 models, which
        # models trained since reproduce exactly), registered after it.
        head = (nn.Conv2d(w4, 2, 3, padding=1) if regression
                else nn.Conv2d(w4, bins.num_bins(), 1))
        self.decoder = Decoder(config.decoder_width, skip=self.context is not None,
                               stride=stride)
        self.head = head
        if not regression:  # uniform until the trainer sets the training prior
            self.register_buffer("log_prior", torch.full((bins.num_bins(),),
                                                         -float(np.log(bins.num_bins()))))
        # Created last: the other parts' initial weights stay those of networks without it.
        self.global_context = GlobalContext() if config.global_context else None

    @property
    def output_stride(self) -> int:
        """The head's output is 1/output_stride of the input size."""
        return 1 if self.config.head == "regression" else self.config.logit_stride

    def set_prior(self, prior: np.ndarray) -> None:
        """The training split's ab prior, used by the prior correction at inference, mixed
        with the uniform distribution (bins.CORRECTION_UNIFORM): with the raw prior, colours
        that a small training split never showed (p ~ 1e-18) would get boosts of tens of nats
        and swamp every photo."""
        mixed = bins.with_uniform(np.asarray(prior, np.float64), bins.CORRECTION_UNIFORM)
        self.log_prior.copy_(torch.log(torch.as_tensor(mixed)))

    @property
    def in_channels(self) -> int:
        return self.trunk.conv1.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"the network takes {self.in_channels} input channels, got "
                                 f"{x.shape[1]}")
            x = F.pad(x, (0, 0, 0, 0, 0, self.in_channels - 1))  # L alone: no hints
        features = self.trunk(x)
        x = features["layer2"] if self.context is None else self.context(features)
        if self.global_context is not None:
            x = self.global_context(x)
        x = self.decoder(x, None if self.context is None else features["layer1"])
        out = self.head(x)
        if self.config.head == "regression":
            out = F.interpolate(out, scale_factor=2)  # 1/2 -> the input size
        return out

    def decode(self, out: torch.Tensor, temperature: float | torch.Tensor = 1.0,
               correction: float | torch.Tensor = 0.0) -> torch.Tensor:
        """The head's raw output -> ab / AB_SCALE at the input's resolution. Temperature and
        prior correction may be one-element tensors (inputs of an exported graph); the
        regression head ignores them."""
        if self.config.head == "regression":
            return out.float()
        logits = out.float() - correction * self.log_prior.reshape(1, -1, 1, 1)
        ab = bins.annealed_mean(logits, temperature) / lab.AB_SCALE
        return F.interpolate(ab, scale_factor=self.output_stride, mode="bilinear",
                             align_corners=False)


class WithDecoding(nn.Module):
    """Network + decoding as one module, -> ab / AB_SCALE: what is exported to ONNX. Its
    inputs, in the order of `input_names`: L (N, 1, H, W); for the classification head
    `temperature` and `prior_correction` (one-element tensors, so they stay choices at
    inference); for a network with hint channels `hints` (N, 3, H, W; model/hints.py)."""

    def __init__(self, net: Colorizer):
        super().__init__()
        self.net = net
        self.input_names = (["L"] + (["temperature", "prior_correction"]
                                     if net.config.head == "classification" else [])
                            + (["hints"] if net.config.hints else []))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.input_names, inputs, strict=True))
        x = given["L"] if "hints" not in given else torch.cat([given["L"], given["hints"]], 1)
        return self.net.decode(self.net(x), given.get("temperature", 1.0),
                               given.get("prior_correction", 0.0))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
