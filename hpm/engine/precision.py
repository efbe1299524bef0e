"""Device and numeric precision: what ``auto`` picks and the matching autocast context."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

from hpm.errors import ConfigError

Resolved = Literal["bf16", "fp16", "fp32"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this rank's CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use cpu or auto")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX, where bf16 matrix multiplies are fast."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> Resolved:
    """Pick the compute precision: ``auto`` is bf16 on CUDA and bf16-native CPUs, else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision not in DTYPES:
        raise ConfigError(f"unknown precision {precision!r}; valid: auto, bf16, fp16, fp32")
    return precision  # type: ignore[return-value]


def autocast(device: torch.device, precision: Resolved) -> ContextManager[object]:
    """Autocast for bf16/fp16 (weights stay fp32); a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def prefer_fused_attention(device: torch.device, precision: Resolved) -> bool:
    """Whether attention should use PyTorch's fused SDPA kernel rather than plain matmuls.

    On the CPU in bf16 the fused (flash) kernel is about 2x slower than two batched matmuls and
    a softmax for the short sequences of masked images (17-197 tokens); its backward took 40%
    of the small preset's step. Everywhere else the fused kernel wins.
    """
    return not (device.type == "cpu" and precision != "fp32")


def enable_tf32(device: torch.device, precision: Resolved) -> None:
    """fp32 on CUDA: let matmuls and convolutions use TF32 tensor cores (fp32 range, 10-bit
    mantissa inputs, fp32 accumulation), as MAE's and timm's training scripts do; several times
    the plain fp32 throughput on A100/H100. Elsewhere nothing changes."""
    if device.type == "cuda" and precision == "fp32":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
