"""Device and precision choice: CUDA when present, else CPU with bf16 autocast if it has bf16."""

from __future__ import annotations

import contextlib

import torch


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def cpu_has_bf16() -> bool:
    """Native bf16 (AVX512-BF16 or AMX); without it bf16 autocast is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, amp: str = "auto"):
    """The autocast context for a forward pass, or a no-op when amp is off or unsupported."""
    if amp == "off":
        return contextlib.nullcontext()
    if device.type == "cuda":  # bf16 needs no gradient scaler; older GPUs stay in fp32
        if torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    if cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, amp: str = "auto") -> str:
    if amp == "off":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"
