"""``hpm bench``: time one training step of MAE and HPM, with FLOPs and MFU.

``--target hog,ema,model`` adds, for every variant, the same step with that reconstruction
target (``<variant>+<target>``) and reports its step time over the variant's norm-pix step
(``<variant>+<target>_over_<variant>``). A ``model`` target without ``--target-weights`` is a
randomly initialised copy of the student's encoder, exported to a temporary file: the cost of
a feature target depends on its architecture, not on its weights.

MFU is measured against the matrix-multiply peak of the same precision on the same device,
timed in the same run (a large square matmul), so the ratio does not depend on a datasheet; on a
GPU of :data:`~hpm.peak_flops.PEAK_TFLOPS` (A100, H100, H200) against its datasheet peak, or
against ``peak_tflops`` when given (``--peak-tflops``). ``peak_source`` says which.

``compile="both"`` (``--compile``) times every variant eagerly and compiled
(``<variant>@compiled``, ``train.compile``), with the compile time (the first step's time over
a compiled step) and ``<variant>@compiled_speedup`` (eager step time / compiled step time).
On CUDA each variant's peak memory is reported (its resident tensors plus the peak of its
step's transient ones); on the CPU it is not measured (null).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from hpm.config import Config, _deep_merge, config_from_dict
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.engine.optim import build_optimizer
from hpm.engine.precision import DTYPES, Resolved, resolve_device, resolve_precision
from hpm.engine.step import PretrainStep
from hpm.masking import num_hard_patches
from hpm.models import build_model, build_run_model
from hpm.peak_flops import datasheet_peak_tflops

COMPILED = "@compiled"  # suffix of a compiled variant's name
COMPILE_MODES = ("auto", "off", "on", "both")
VARIANTS = ("mae", "hpm", "hpm_masked", "hpm_efficient", "random_predictor", "attention", "attention_predictor")
# What each variant with a loss predictor changes (on top of the relative objective):
# hpm: the paper's full-image teacher; hpm_masked: the teacher scores a random partial view;
# hpm_efficient: that, with a shallow loss predictor (configs/ablations/efficient.yaml);
# random_predictor: random masks, the predictor trained, no teacher (the objective alone);
# attention_predictor: AttMask's full-image [CLS] attention chooses the mask (hints mode), the
# one-block predictor trained beside it. The paper's loss predictor is as deep as the decoder
# (predictor_depth None).
_ATTENTION_MASK = {"strategy": "attention", "teacher_view": "full", "attention_mode": "hints"}
PREDICTOR_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "hpm": {"mask": {"strategy": "hpm", "teacher_view": "full"}, "model": {"predictor_depth": None}},
    "hpm_masked": {"mask": {"strategy": "hpm", "teacher_view": "masked"}, "model": {"predictor_depth": None}},
    "hpm_efficient": {"mask": {"strategy": "hpm", "teacher_view": "masked"}, "model": {"predictor_depth": 1}},
    "random_predictor": {"mask": {"strategy": "random"}, "model": {"predictor_depth": None}},
    "attention_predictor": {"mask": _ATTENTION_MASK, "model": {"predictor_depth": 1}},
}
# Variants without a loss predictor besides MAE: attention, an EMA encoder's attention chooses the mask.
PLAIN_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "attention": {"mask": _ATTENTION_MASK, "loss": {"predictor": "none"}},
}
DEFAULT_VARIANTS = ("mae", "hpm", "hpm_masked", "hpm_efficient", "attention", "attention_predictor")


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
    """The config of a benchmark variant: ``mae`` (no predictor, ``mask`` masking), ``attention``
    (:data:`PLAIN_VARIANTS`) or a variant with the loss predictor (:data:`PREDICTOR_VARIANTS`)."""
    raw = base.model_dump(mode="json")
    if variant == "mae":
        raw["mask"]["strategy"] = mask
        raw["loss"]["predictor"] = "none"
    elif variant in PLAIN_VARIANTS:
        raw = _deep_merge(raw, PLAIN_VARIANTS[variant])
    elif variant in PREDICTOR_VARIANTS:
        raw["loss"]["predictor"] = "relative"
        raw = _deep_merge(raw, PREDICTOR_VARIANTS[variant])
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
    peak_mem_gb: float | None  # None: not measured (CPU)
    first_step_s: float  # the first step (a compiled variant compiles in it)
    compiled: bool = False

    def as_dict(self) -> dict[str, Any]:
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
        self.images = torch.randn(  # [N, C, H, W]
            cfg.train.batch_size, m.in_chans, m.img_size, m.img_size, device=device
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


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


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
        for i in range(max(warmup, 1)):
            _sync(device)
            start = time.perf_counter()
            v.step()
            _sync(device)
            if i == 0:
                v.first_step_s = time.perf_counter() - start
    gflops = {name: v.gflop() for name, v in variants.items()}
    peaks: list[float] = []
    for _ in range(steps):
        peaks.append(measure_peak_gflops(device, precision, seconds=0.5))
        for v in variants.values():
            _timed_step(v, device)
    peak = max(peaks)  # the sustained best: a conservative denominator for MFU
    results = {}
    for name, v in variants.items():
        step_s = _median(v.times)
        peak_mem = (v.resident_bytes() + v.peak_bytes) / 2**30 if device.type == "cuda" else None
        results[name] = BenchResult(
            step_s, v.cfg.train.batch_size / step_s, gflops[name], gflops[name] / step_s / peak,
            v.phases(max(1, min(steps, 3))), peak_mem, v.first_step_s, v.step_fn.compiled,
        )
    return peak, results


def _timed_step(v: _Variant, device: torch.device) -> None:
    """One timed step of ``v``; on CUDA also the peak of its transient memory."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    v.step()
    _sync(device)
    v.times.append(time.perf_counter() - start)
    if device.type == "cuda":
        v.peak_bytes = max(v.peak_bytes, torch.cuda.max_memory_allocated(device) - before)


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
                cfgs[f"{v}+{target}"] = _with_target(cfgs[v], target, target_weights, Path(tmp))
        result["targets"] = {t: _describe_target(cfgs[f"{variants[0]}+{t}"], target_weights) for t in targets or []}
        cfgs = _compile_variants(cfgs, compile)
        _bench_all(result, cfgs, device, resolved, steps, warmup, peak_tflops)

    for name in [*PREDICTOR_VARIANTS, *PLAIN_VARIANTS]:
        if "mae" in variants and name in variants:
            result[f"{name}_over_mae"] = {
                p: result[name][p]["step_s"] / result["mae"][p]["step_s"] for p in resolved
            }
    for name in cfgs:
        if "+" in name and not name.endswith(COMPILED):
            base = name.split("+")[0]
            result[f"{name}_over_{base}"] = {p: result[name][p]["step_s"] / result[base][p]["step_s"] for p in resolved}
        if name.endswith(COMPILED):
            eager = name[: -len(COMPILED)]
            result[f"{name}_speedup"] = {p: result[eager][p]["step_s"] / result[name][p]["step_s"] for p in resolved}
    result["variants"] = list(cfgs)
    if "mae" in variants and "hpm" in variants:
        if "fp32" in resolved and "bf16" in resolved:
            result["hpm_bf16_over_mae_fp32"] = result["hpm"]["bf16"]["step_s"] / result["mae"]["fp32"]["step_s"]
    for name in cfgs:
        for prec, r in result[name].items():
            r["mask_share"] = r["phases_s"].get("masks", 0.0) / r["step_s"]
    return result


def _compile_variants(cfgs: dict[str, Config], mode: str) -> dict[str, Config]:
    """The variants with ``train.compile`` set: as given (``auto``), off, on, or both
    (each variant and its ``@compiled`` twin)."""
    if mode == "auto":
        return cfgs
    out: dict[str, Config] = {}
    for name, cfg in cfgs.items():
        if mode in ("off", "both"):
            out[name] = _with_compile(cfg, False)
        if mode in ("on", "both"):
            out[name + (COMPILED if mode == "both" else "")] = _with_compile(cfg, True)
    return out


def _with_compile(cfg: Config, enabled: bool) -> Config:
    out = cfg.model_copy(deep=True)
    out.train.compile = enabled
    return out


def _mfu_peak(device: torch.device, precision: Resolved, peak_tflops: float | None) -> tuple[float | None, str]:
    """(the MFU denominator in TFLOP/s, or None for the measured matmul peak; where it comes from)."""
    if peak_tflops is not None:
        return peak_tflops, f"--peak-tflops {peak_tflops:g}"
    if device.type == "cuda":
        found = datasheet_peak_tflops(torch.cuda.get_device_name(device), precision)
        if found is not None:
            tflops, key = found
            return tflops, f"datasheet {key} {precision} {tflops:g} TFLOP/s (dense)"
    return None, "measured: the sustained best of a square matmul in the same run"


def _bench_all(
    result: dict[str, Any], cfgs: dict[str, Config], device: torch.device, precisions: list[Resolved], steps: int,
    warmup: int, peak_tflops: float | None = None,
) -> None:
    for prec in precisions:
        peak_ref, source = _mfu_peak(device, prec, peak_tflops)
        measured, results = bench_precision(cfgs, device, prec, steps, warmup)
        denominator = measured if peak_ref is None else peak_ref * 1e3
        result["peak_gflops"][prec] = denominator
        result["measured_peak_gflops"][prec] = measured
        result["peak_source"][prec] = source
        for name, r in results.items():
            if peak_ref is not None:
                r.mfu = r.gflop_per_step / r.step_s / denominator
            result.setdefault(name, {})[prec] = r.as_dict()


def _with_target(cfg: Config, target: str, weights: str | None, tmp: Path) -> Config:
    """``cfg`` with ``loss.target=target``; a ``model`` target without weights gets a randomly
    initialised copy of the student's encoder, exported into ``tmp``."""
    raw = cfg.model_dump(mode="json")
    raw["loss"].update(target=target, target_dim=None)
    if target == "model":
        if weights is None:
            from hpm.export import export_encoder

            file = tmp / "random_encoder.safetensors"
            if not file.is_file():
                torch.manual_seed(0)
                chans = int(cfg.model.in_chans or 3)
                base = cfg.model_dump(mode="json")
                meta_cfg = config_from_dict({**base, "data": {**base["data"], "mean": [0.5] * chans, "std": [0.5] * chans}})
                export_encoder(build_model(cfg.model, loss_predictor=False), meta_cfg, file)
            weights = str(file)
        raw["loss"]["target_weights"] = weights
    return config_from_dict(raw)


def _describe_target(cfg: Config, weights: str | None) -> str:
    lc = cfg.loss
    if lc.target == "hog":
        return f"HOG, {lc.hog_bins} bins, {lc.hog_cell or 'half-patch'} px cells"
    if lc.target == "ema":
        return "EMA teacher encoder features (full image)"
    if lc.target == "model":
        return f"frozen model {weights}" if weights else "frozen model: a random copy of the student's encoder (timing only)"
    return lc.target


def format_bench(result: dict[str, Any]) -> str:
    """A readable table of :func:`run_bench`'s result."""
    lines = [
        f"device: {result['device']} | preset {result['preset']}, batch {result['batch_size']}, "
        f"{result['img_size']} px, median of {result['steps']} interleaved steps",
        "MFU peak: " + ", ".join(
            f"{p} {g:.0f} GFLOP/s ({result.get('peak_source', {}).get(p, 'measured')})"
            for p, g in result["peak_gflops"].items()
        ),
        f"{'variant':25} {'prec':5} {'step s':>8} {'img/s':>8} {'GFLOP':>8} {'MFU':>6} {'mem GiB':>7} "
        f"{'compile s':>9}  phases (s)",
    ]
    for variant in result.get("variants", VARIANTS):
        for prec, r in result.get(variant, {}).items():
            phases = " ".join(f"{k}={v:.3f}" for k, v in r["phases_s"].items())
            mem = "n/a" if r.get("peak_mem_gb") is None else f"{r['peak_mem_gb']:.1f}"
            comp = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
            lines.append(
                f"{variant:25} {prec:5} {r['step_s']:8.3f} {r['img_per_s']:8.1f} "
                f"{r['gflop_per_step']:8.1f} {r['mfu']:6.2f} {mem:>7} {comp:>9}  {phases}"
            )
    for name in [*PREDICTOR_VARIANTS, *PLAIN_VARIANTS]:
        for prec, ratio in result.get(f"{name}_over_mae", {}).items():
            lines.append(f"{name} / mae step time ({prec}): {ratio:.2f}x")
    for name in result.get("variants", []):
        if name.endswith(COMPILED):
            for prec, ratio in result[f"{name}_speedup"].items():
                lines.append(f"{name[: -len(COMPILED)]}: eager / compiled step time ({prec}): {ratio:.2f}x")
        elif "+" in name:
            base = name.split("+")[0]
            for prec, ratio in result[f"{name}_over_{base}"].items():
                lines.append(f"{name} / {base} (norm-pix) step time ({prec}): {ratio:.2f}x")
    for target, text in result.get("targets", {}).items():
        lines.append(f"target {target}: {text}")
    if "hpm_bf16_over_mae_fp32" in result:
        lines.append(f"HPM bf16 / MAE fp32 step time: {result['hpm_bf16_over_mae_fp32']:.2f}x")
    return "\n".join(lines)
