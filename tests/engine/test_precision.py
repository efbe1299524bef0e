"""Device and precision resolution on the CPU."""

from __future__ import annotations

import pytest
import torch

from hpm.engine.precision import (
    autocast,
    cpu_has_native_bf16,
    prefer_fused_attention,
    resolve_device,
    resolve_precision,
)
from hpm.errors import ConfigError

CPU = torch.device("cpu")


def test_explicit_cpu_precisions() -> None:
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"


def test_auto_on_cpu_follows_the_cpu() -> None:
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", CPU) == expected
    assert isinstance(cpu_has_native_bf16(), bool)


def test_fp16_on_cpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", CPU)


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="valid"):
        resolve_precision("int8", CPU)


def test_autocast_contexts() -> None:
    a = torch.randn(4, 4)
    with autocast(CPU, "fp32"):
        assert (a @ a).dtype == torch.float32
    with autocast(CPU, "bf16"):
        assert (a @ a).dtype == torch.bfloat16


def test_resolve_device_cpu() -> None:
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


def test_prefer_fused_attention() -> None:
    assert prefer_fused_attention(CPU, "fp32") is True
    assert prefer_fused_attention(CPU, "bf16") is False
    assert prefer_fused_attention(torch.device("cuda", 0), "bf16") is True
