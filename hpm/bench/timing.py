"""Timing the training step of several variants at one precision, interleaved step by step."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpm.bench.device import measure_peak_gflops, sync
from hpm.config import Config
from hpm.engine.optim import build_optimizer
from hpm.engine.precision import Resolved
from hpm.engine.step import PretrainStep
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.masking import num_hard_patches
from hpm.models import build_run_model


@dataclass
class BenchResult:
    """Timings of one variant at one precision."""

    step_s: float
    img_per_s: float
    gflop_per_step: float
    mfu: float
    phases_s: dict[str, float]
    peak_mem_gb: float | None  # None: not measured (CPU)
    first_step_s: float  # the first step (a compiled variant compiles in it)
    compiled: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready timings (a compiled variant's with its compile time)."""
        out: dict[str, Any] = {
            "step_s": self.step_s,
            "img_per_s": self.img_per_s,
            "gflop_per_step": self.gflop_per_step,
            "mfu": self.mfu,
            "phases_s": self.phases_s,
            "peak_mem_gb": self.peak_mem_gb,
            "first_step_s": self.first_step_s,
        }
        if self.compiled:
            out["compile_s"] = max(self.first_step_s - self.step_s, 0.0)
        return out


class _Variant:
    """A ready-to-step model, optimizer and synthetic batch of one benchmark variant."""

    def __init__(self, cfg: Config, device: torch.device, precision: Resolved) -> None:
        torch.manual_seed(cfg.train.seed)
        target = build_target(cfg, device)
        cfg = resolve_target_dim(cfg, target)
        self.cfg = cfg
        model = build_run_model(cfg).to(device)
        optimizer = build_optimizer(model, cfg.train, lr=1e-4)
        self.step_fn = PretrainStep(cfg, model, optimizer, device, precision, target=target)
        m = cfg.model
        frames = () if m.num_frames is None else (m.num_frames,)
        self.images = torch.randn(  # [N, C, H, W], video: [N, C, T, H, W]
            cfg.train.batch_size, m.in_chans, *frames, m.img_size, m.img_size, device=device
        )
        self.num_hard = num_hard_patches(self.step_fn.num_mask, 0.5) if self.step_fn.uses_teacher else 0
        self.times: list[float] = []
        self.first_step_s = 0.0
        self.peak_bytes = 0  # transient peak of a step over what was allocated before it (CUDA)

    def step(self) -> None:
        """One full training step: masks (with the teacher for HPM), forward, backward, optimizer, EMA."""
        masks, scores = self.step_fn.generate_mask(self.images, self.num_hard)
        self.step_fn.forward_backward(self.images, masks, scores, self.num_hard)
        self.step_fn.optimizer_step(0.999)

    def gflop(self) -> float:
        """FLOPs of one step (matmuls, attention, convolution; forward and backward), counted
        on an eager step (the same math for a compiled variant)."""
        counter = FlopCounterMode(display=False)
        set_stance = getattr(torch.compiler, "set_stance", None)  # PyTorch >= 2.6
        eager = set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
        with eager, counter:
            self.step()
        return counter.get_total_flops() / 1e9

    def resident_bytes(self) -> int:
        """Bytes of the tensors this variant keeps between steps: weights (student, teacher,
        a frozen target model), optimizer state and the batch."""
        step_fn = self.step_fn
        tensors = list(step_fn.model.parameters()) + list(step_fn.model.buffers())
        for module in (step_fn.teacher, step_fn.target.frozen):
            if module is not None:
                tensors += list(module.parameters()) + list(module.buffers())
        tensors += [t for state in step_fn.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        tensors.append(self.images)
        return sum(t.numel() * t.element_size() for t in tensors)

    def phases(self, steps: int) -> dict[str, float]:
        """Mean time per phase over ``steps`` extra steps, synchronised around each phase."""
        timer = self.step_fn.timer
        timer.reset()
        timer.enabled = True
        for _ in range(steps):
            self.step()
        timer.enabled = False
        return {k: v / steps for k, v in timer.totals.items()}


def bench_precision(
    cfgs: dict[str, Config], device: torch.device, precision: Resolved, steps: int, warmup: int
) -> tuple[float, dict[str, BenchResult]]:
    """Benchmark variants at one precision, interleaved step by step.

    Each round times one step of every variant and one matmul burst for the peak, so slow
    phases of a shared machine hit all of them alike; medians over the rounds are reported.

    Returns:
        (peak GFLOP/s, {variant: result}).
    """
    variants = {name: _Variant(cfg, device, precision) for name, cfg in cfgs.items()}
    for v in variants.values():
        _warm_up(v, device, warmup)
    gflops = {name: v.gflop() for name, v in variants.items()}
    peaks: list[float] = []
    for _ in range(steps):
        peaks.append(measure_peak_gflops(device, precision, seconds=0.5))
        for v in variants.values():
            _timed_step(v, device)
    peak = max(peaks)  # the sustained best: a conservative denominator for MFU
    results = {}
    for name, v in variants.items():
        step_s = statistics.median(v.times)
        peak_mem = (v.resident_bytes() + v.peak_bytes) / 2**30 if device.type == "cuda" else None
        results[name] = BenchResult(
            step_s, v.cfg.train.batch_size / step_s, gflops[name], gflops[name] / step_s / peak,
            v.phases(max(1, min(steps, 3))), peak_mem, v.first_step_s, v.step_fn.compiled,
        )
    return peak, results


def _warm_up(v: _Variant, device: torch.device, warmup: int) -> None:
    """Untimed steps (at least one); the first one's time is kept (a compiled variant compiles in it)."""
    for i in range(max(warmup, 1)):
        sync(device)
        start = time.perf_counter()
        v.step()
        sync(device)
        if i == 0:
            v.first_step_s = time.perf_counter() - start


def _timed_step(v: _Variant, device: torch.device) -> None:
    """One timed step of ``v``; on CUDA also the peak of its transient memory."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    v.step()
    sync(device)
    v.times.append(time.perf_counter() - start)
    if device.type == "cuda":
        v.peak_bytes = max(v.peak_bytes, torch.cuda.max_memory_allocated(device) - before)
