"""The device a benchmark runs on: its name, a synchronisation point and its matmul peak."""

from __future__ import annotations

import time

import torch

from hpm.engine.precision import DTYPES, Resolved
from hpm.peak_flops import datasheet_peak_tflops


def device_name(device: torch.device) -> str:
    """Human-readable device description."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_gflops(device: torch.device, precision: Resolved, seconds: float = 1.0) -> float:
    """Sustained GFLOP/s of a large square matmul in the given precision."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    for _ in range(2):
        a @ b
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        for _ in range(4):
            a @ b
        reps += 4
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * n**3 * reps / elapsed / 1e9


def mfu_peak(device: torch.device, precision: Resolved, peak_tflops: float | None) -> tuple[float | None, str]:
    """(the MFU denominator in TFLOP/s, or None for the measured matmul peak; where it comes from)."""
    if peak_tflops is not None:
        return peak_tflops, f"--peak-tflops {peak_tflops:g}"
    if device.type == "cuda":
        found = datasheet_peak_tflops(torch.cuda.get_device_name(device), precision)
        if found is not None:
            tflops, key = found
            return tflops, f"datasheet {key} {precision} {tflops:g} TFLOP/s (dense)"
    return None, "measured: the sustained best of a square matmul in the same run"
