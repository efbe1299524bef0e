"""Datasheet peak matrix throughput of the GPUs MFU is usually quoted against.

Dense (no structured sparsity) tensor-core figures of NVIDIA's datasheets, TFLOP/s per GPU;
``fp32`` is the TF32 tensor-core rate, which fp32 training uses on CUDA here
(:func:`~hpm.engine.precision.enable_tf32`). Keys are matched against
``torch.cuda.get_device_name()`` in order, most specific first ("H100 PCIe" before "H100").
"""

from __future__ import annotations

PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 417.5}),
    ("H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),  # SXM
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "fp32": 378.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 417.5}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),  # SXM and PCIe alike
)


def datasheet_peak_tflops(device_name: str, precision: str) -> tuple[float, str] | None:
    """(peak TFLOP/s, the table key that matched) for a GPU name, or None if it is not in the table."""
    name = device_name.upper()
    for key, peaks in PEAK_TFLOPS:
        if key.upper() in name and precision in peaks:
            return peaks[precision], key
    return None
