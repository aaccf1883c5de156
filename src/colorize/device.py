"""Device and precision choice, shared by training, evaluation and prediction.

CUDA when present (the GPU of this process's local rank under torchrun), else the CPU.
Precision: bf16 autocast where the hardware has it (CUDA with bf16, CPUs with AVX512-BF16/AMX);
on GPUs without bf16, fp16 autocast with a gradient scaler in training (GradScaler below);
fp32 otherwise, or with amp "off".
"""

from __future__ import annotations

import contextlib

import torch

from colorize.errors import UserError


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda, but no CUDA device is available here "
                        "(set train.device: auto or cpu)")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def cpu_has_bf16() -> bool:
    """Native bf16 (AVX512-BF16 or AMX); without it bf16 autocast is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_name(device: torch.device, amp: str = "auto") -> str:
    """'bf16', 'fp16' (CUDA without bf16: needs a gradient scaler) or 'fp32'."""
    if amp == "off":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(device: torch.device, amp: str = "auto"):
    """The autocast context for a forward pass, or a no-op in fp32."""
    name = precision_name(device, amp)
    if name == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: str = "auto") -> torch.amp.GradScaler:
    """A scaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type,
                                enabled=precision_name(device, amp) == "fp16")
