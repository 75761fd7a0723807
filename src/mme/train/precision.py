"""Device and numeric precision: what runs where, chosen from the hardware and printed by the caller.

bf16 autocast is the default only where the hardware computes in bf16 natively (CUDA with bf16 support, or a
CPU with AVX512-BF16 / AMX). On an AVX2-only CPU bf16 is emulated and a ViT step is ~18x slower than fp32
(platform-notes.md), so "auto" means fp32 there. fp16 always comes with a gradient scaler.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from pathlib import Path

import torch

from mme.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def choose_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' = this rank's CUDA device when there is one, else CPU; 'cuda' = this rank's CUDA device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"train.device: {name!r} is not a device ('auto', 'cpu', 'cuda', 'cuda:1', ...)") from e


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (not emulated) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def choose_precision(requested: str, device: torch.device) -> str:
    """Resolve 'auto' to bf16 where native, else fp32; warn when an explicit bf16 will be emulated."""
    if requested not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if requested == "bf16" and not bf16_native(device):
        log.warning("bf16 requested on %s without native bf16 support: it will be emulated and slow", device)
    return requested


def autocast(precision: str, device: torch.device):
    """The forward pass's autocast context (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), quoted with every figure a run or benchmark prints."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
