"""Step-time targets of MAE and HPM, measured in one run, printed as a Markdown table.

    python benchmarks/step_speed.py                      # ViT-B/16, batch 8, fp32 + bf16 (CPU)
    python benchmarks/step_speed.py --preset small --batch-size 128
    python benchmarks/step_speed.py --json docs/bench.json

Targets (issues #2 and #3, for ViT-B/16 at batch 8 on the CPU): MAE fp32 MFU >= 0.80;
MAE bf16 step >= 2x faster than fp32; HPM/MAE step time <= 2.3x in fp32 with HPM MFU >= 0.80;
HPM bf16 step no slower than the MAE fp32 step; mask generation < 1% of the step. Issue #12:
the masked-view teacher (hpm_masked) <= 1.9x the MAE step in fp32, the efficient mode
(masked view + one-block loss predictor) <= 1.4x.
Each line says whether this run met it; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hpm.bench import DEFAULT_VARIANTS, format_bench, run_bench
from hpm.config import build_config


def targets(r: dict) -> list[tuple[str, float, str, bool]]:
    """(name, measured, target, met) for every target that the run's precisions allow."""
    out = []
    mae, hpm = r.get("mae", {}), r.get("hpm", {})
    if "fp32" in mae:
        out.append(("MAE fp32 MFU", mae["fp32"]["mfu"], ">= 0.80", mae["fp32"]["mfu"] >= 0.80))
    if "fp32" in mae and "bf16" in mae:
        x = mae["fp32"]["step_s"] / mae["bf16"]["step_s"]
        out.append(("MAE bf16 speed-up over fp32", x, ">= 2.0x", x >= 2.0))
    if "fp32" in hpm and "fp32" in mae:
        x = hpm["fp32"]["step_s"] / mae["fp32"]["step_s"]
        out.append(("HPM / MAE step time, fp32", x, "<= 2.3x", x <= 2.3))
        out.append(("HPM fp32 MFU", hpm["fp32"]["mfu"], ">= 0.80", hpm["fp32"]["mfu"] >= 0.80))
    if "bf16" in hpm and "fp32" in mae:
        x = hpm["bf16"]["step_s"] / mae["fp32"]["step_s"]
        out.append(("HPM bf16 / MAE fp32 step time", x, "<= 1.0x", x <= 1.0))
    for name, limit in (("hpm_masked", 1.9), ("hpm_efficient", 1.4)):
        if "fp32" in r.get(name, {}) and "fp32" in mae:
            x = r[name]["fp32"]["step_s"] / mae["fp32"]["step_s"]
            out.append((f"{name} / MAE step time, fp32", x, f"<= {limit}x", x <= limit))
    for prec, res in hpm.items():
        out.append((f"HPM mask share of step ({prec})", res["mask_share"], "< 1%", res["mask_share"] < 0.01))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="vit_b16")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the raw result here")
    args = p.parse_args()
    cfg = build_config(overrides={"model": {"preset": args.preset}, "train": {"batch_size": args.batch_size}})
    result = run_bench(cfg, args.precision.split(","), list(DEFAULT_VARIANTS), args.steps, args.warmup)
    print(format_bench(result))
    print("\n| target | measured | wanted | met |\n|---|---|---|---|")
    for name, value, want, met in targets(result):
        shown = f"{value:.1%}" if "share" in name else f"{value:.2f}"
        print(f"| {name} | {shown} | {want} | {'yes' if met else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
