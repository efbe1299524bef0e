"""The readable table of ``hpm bench``."""

from __future__ import annotations

from typing import Any

from hpm.bench.variants import COMPILED, PLAIN_VARIANTS, PREDICTOR_VARIANTS, VARIANTS


def format_bench(result: dict[str, Any]) -> str:
    """A readable table of :func:`~hpm.bench.run.run_bench`'s result."""
    lines = [
        f"device: {result['device']} | preset {result['preset']}, batch {result['batch_size']}, "
        f"{result['img_size']} px{_frames(result)}, median of {result['steps']} interleaved steps",
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
    return "\n".join(lines + _ratio_lines(result))


def _ratio_lines(result: dict[str, Any]) -> list[str]:
    """The ratios of the table: to MAE, eager to compiled, to the norm-pix step; the targets."""
    lines = []
    for base in ("mae", "videomae"):
        for name in [*PREDICTOR_VARIANTS, *PLAIN_VARIANTS]:
            for prec, ratio in result.get(f"{name}_over_{base}", {}).items():
                lines.append(f"{name} / {base} step time ({prec}): {ratio:.2f}x")
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
    return lines


def _frames(result: dict[str, Any]) -> str:
    """`` x T frames`` for a video model, else nothing."""
    frames = result.get("num_frames")
    return f" x {frames} frames" if frames else ""
