"""``run_bench``: every variant (and target, and compiled twin) at every precision, with ratios."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from hpm.bench.device import device_name, mfu_peak
from hpm.bench.targets import describe_target, with_target
from hpm.bench.timing import bench_precision
from hpm.bench.variants import COMPILE_MODES, COMPILED, PLAIN_VARIANTS, PREDICTOR_VARIANTS, compile_variants, variant_config
from hpm.config import Config
from hpm.engine.precision import Resolved, resolve_device, resolve_precision


def run_bench(
    cfg: Config,
    precisions: list[str],
    variants: list[str],
    steps: int = 5,
    warmup: int = 2,
    mask: str = "random",
    targets: list[str] | None = None,
    target_weights: str | None = None,
    compile: str = "auto",
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Benchmark each variant at each precision; returns the JSON-ready result.

    Args:
        targets: Reconstruction targets (``loss.target``) to time beside each variant's norm-pix step.
        target_weights: The weights of a ``model`` target (default: a random copy of the encoder).
        compile: ``auto`` (as ``train.compile: auto``: compiled on CUDA), ``off``, ``on``, or
            ``both``: every variant eager and compiled (``<variant>@compiled``).
        peak_tflops: The MFU denominator (default: the GPU's datasheet peak if it is in
            :data:`~hpm.peak_flops.PEAK_TFLOPS`, else the measured matmul peak).
    """
    if compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile!r}; valid: {', '.join(COMPILE_MODES)}")
    device = resolve_device(cfg.train.device)
    resolved = [resolve_precision(p, device) for p in precisions]
    if cfg.model.in_chans is None:
        cfg.model.in_chans = 3
    result: dict[str, Any] = {
        "device": device_name(device),
        "preset": cfg.model.preset,
        "batch_size": cfg.train.batch_size,
        "img_size": cfg.model.img_size,
        "num_frames": cfg.model.num_frames,
        "steps": steps,
        "compile": compile,
        "peak_gflops": {},
        "measured_peak_gflops": {},
        "peak_source": {},
    }
    cfgs = {v: variant_config(cfg, v, mask) for v in variants}
    with tempfile.TemporaryDirectory(prefix="hpm_bench_") as tmp:
        for target in targets or []:
            for v in variants:
                cfgs[f"{v}+{target}"] = with_target(cfgs[v], target, target_weights, Path(tmp))
        result["targets"] = {t: describe_target(cfgs[f"{variants[0]}+{t}"], target_weights) for t in targets or []}
        cfgs = compile_variants(cfgs, compile)
        _bench_all(result, cfgs, device, resolved, steps, warmup, peak_tflops)
    _add_ratios(result, list(cfgs), variants, resolved)
    return result


def _bench_all(
    result: dict[str, Any], cfgs: dict[str, Config], device: torch.device, precisions: list[Resolved], steps: int,
    warmup: int, peak_tflops: float | None = None,
) -> None:
    """Time every variant at every precision into ``result``, with the MFU denominator used."""
    for prec in precisions:
        peak_ref, source = mfu_peak(device, prec, peak_tflops)
        measured, results = bench_precision(cfgs, device, prec, steps, warmup)
        denominator = measured if peak_ref is None else peak_ref * 1e3
        result["peak_gflops"][prec] = denominator
        result["measured_peak_gflops"][prec] = measured
        result["peak_source"][prec] = source
        for name, r in results.items():
            if peak_ref is not None:
                r.mfu = r.gflop_per_step / r.step_s / denominator
            result.setdefault(name, {})[prec] = r.as_dict()


def _add_ratios(result: dict[str, Any], names: list[str], variants: list[str], resolved: list[Resolved]) -> None:
    """Step-time ratios (to MAE, to the norm-pix step, eager to compiled), the variants timed
    and each one's share of time spent choosing masks."""
    for base in ("mae", "videomae"):  # the baseline of image and of video models
        for name in [*PREDICTOR_VARIANTS, *PLAIN_VARIANTS]:
            if base in variants and name in variants and name != base:
                result[f"{name}_over_{base}"] = {
                    p: result[name][p]["step_s"] / result[base][p]["step_s"] for p in resolved
                }
    for name in names:
        if "+" in name and not name.endswith(COMPILED):
            base = name.split("+")[0]
            result[f"{name}_over_{base}"] = {p: result[name][p]["step_s"] / result[base][p]["step_s"] for p in resolved}
        if name.endswith(COMPILED):
            eager = name[: -len(COMPILED)]
            result[f"{name}_speedup"] = {p: result[eager][p]["step_s"] / result[name][p]["step_s"] for p in resolved}
    result["variants"] = names
    if "mae" in variants and "hpm" in variants:
        if "fp32" in resolved and "bf16" in resolved:
            result["hpm_bf16_over_mae_fp32"] = result["hpm"]["bf16"]["step_s"] / result["mae"]["fp32"]["step_s"]
    for name in names:
        for prec, r in result[name].items():
            r["mask_share"] = r["phases_s"].get("masks", 0.0) / r["step_s"]
