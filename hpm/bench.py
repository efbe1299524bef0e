"""``hpm bench``: time one training step of MAE and HPM, with FLOPs and MFU.

MFU is measured against the matrix-multiply peak of the same precision on the same device,
timed in the same run (a large square matmul), so the ratio does not depend on a datasheet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpm.config import Config, config_from_dict
from hpm.engine.optim import build_optimizer
from hpm.engine.precision import DTYPES, Resolved, resolve_device, resolve_precision
from hpm.engine.step import PretrainStep
from hpm.masking import num_hard_patches
from hpm.models import build_model

VARIANTS = ("mae", "hpm")


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_gflops(device: torch.device, precision: Resolved, seconds: float = 1.0) -> float:
    """Sustained GFLOP/s of a large square matmul in the given precision."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    for _ in range(2):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        for _ in range(4):
            a @ b
        reps += 4
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * n**3 * reps / elapsed / 1e9


def variant_config(base: Config, variant: str, mask: str) -> Config:
    """The config of a benchmark variant: ``mae`` (no predictor) or ``hpm`` (teacher masks)."""
    raw = base.model_dump(mode="json")
    if variant == "mae":
        raw["mask"]["strategy"] = mask
        raw["loss"]["predictor"] = "none"
    elif variant == "hpm":
        raw["mask"]["strategy"] = "hpm"
        raw["loss"]["predictor"] = "relative"
    else:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return config_from_dict(raw)


@dataclass
class BenchResult:
    """Timings of one variant at one precision."""

    step_s: float
    img_per_s: float
    gflop_per_step: float
    mfu: float
    phases_s: dict[str, float]
    peak_mem_gb: float | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step_s": self.step_s,
            "img_per_s": self.img_per_s,
            "gflop_per_step": self.gflop_per_step,
            "mfu": self.mfu,
            "phases_s": self.phases_s,
        }
        if self.peak_mem_gb is not None:
            out["peak_mem_gb"] = self.peak_mem_gb
        return out


def bench_variant(
    cfg: Config, device: torch.device, precision: Resolved, steps: int, warmup: int, peak_gflops: float
) -> BenchResult:
    """Time ``steps`` full training steps (masks, forward, backward, optimizer, EMA)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, loss_predictor=cfg.loss.predictor != "none").to(device)
    optimizer = build_optimizer(model, cfg.train, lr=1e-4)
    step_fn = PretrainStep(cfg, model, optimizer, device, precision)
    n, m = cfg.train.batch_size, cfg.model
    images = torch.randn(n, m.in_chans, m.img_size, m.img_size, device=device)  # [N, C, H, W]
    num_hard = num_hard_patches(step_fn.num_mask, 0.5) if step_fn.uses_teacher else 0

    def one_step() -> None:
        masks, scores = step_fn.generate_mask(images, num_hard)
        step_fn.forward_backward(images, masks, scores)
        step_fn.optimizer_step(0.999)

    for _ in range(warmup):
        one_step()
    flops = FlopCounterMode(display=False)
    with flops:
        one_step()
    gflop = flops.get_total_flops() / 1e9
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    step_s = (time.perf_counter() - start) / steps
    # phase split in separate, synchronised steps (the syncs would distort the total)
    step_fn.timer.enabled = True
    for _ in range(max(1, min(steps, 3))):
        one_step()
    phases = {k: v / max(1, min(steps, 3)) for k, v in step_fn.timer.totals.items()}
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return BenchResult(step_s, n / step_s, gflop, gflop / step_s / peak_gflops, phases, peak_mem)


def run_bench(
    cfg: Config,
    precisions: list[str],
    variants: list[str],
    steps: int = 5,
    warmup: int = 2,
    mask: str = "random",
) -> dict[str, Any]:
    """Benchmark each variant at each precision; returns the JSON-ready result."""
    device = resolve_device(cfg.train.device)
    resolved = [resolve_precision(p, device) for p in precisions]
    if cfg.model.in_chans is None:
        cfg.model.in_chans = 3
    result: dict[str, Any] = {
        "device": device_name(device),
        "preset": cfg.model.preset,
        "batch_size": cfg.train.batch_size,
        "img_size": cfg.model.img_size,
        "peak_gflops": {},
    }
    for prec in resolved:
        result["peak_gflops"][prec] = measure_peak_gflops(device, prec)
    for variant in variants:
        vcfg = variant_config(cfg, variant, mask)
        result[variant] = {}
        for prec in resolved:
            r = bench_variant(vcfg, device, prec, steps, warmup, result["peak_gflops"][prec])
            result[variant][prec] = r.as_dict()
    if "mae" in variants and "hpm" in variants:
        result["hpm_over_mae"] = {
            p: result["hpm"][p]["step_s"] / result["mae"][p]["step_s"] for p in resolved
        }
    return result


def format_bench(result: dict[str, Any]) -> str:
    """A readable table of :func:`run_bench`'s result."""
    lines = [
        f"device: {result['device']} | preset {result['preset']}, batch {result['batch_size']}, "
        f"{result['img_size']} px",
        "matmul peak: " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in result["peak_gflops"].items()),
        f"{'variant':8} {'prec':5} {'step s':>8} {'img/s':>8} {'GFLOP':>8} {'MFU':>6}  phases (s)",
    ]
    for variant in VARIANTS:
        for prec, r in result.get(variant, {}).items():
            phases = " ".join(f"{k}={v:.3f}" for k, v in r["phases_s"].items())
            mem = f" peak mem {r['peak_mem_gb']:.1f} GiB" if "peak_mem_gb" in r else ""
            lines.append(
                f"{variant:8} {prec:5} {r['step_s']:8.3f} {r['img_per_s']:8.1f} "
                f"{r['gflop_per_step']:8.1f} {r['mfu']:6.2f}  {phases}{mem}"
            )
    for prec, ratio in result.get("hpm_over_mae", {}).items():
        lines.append(f"HPM / MAE step time ({prec}): {ratio:.2f}x")
    return "\n".join(lines)
