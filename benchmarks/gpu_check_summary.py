"""The summary of ``benchmarks/gpu_check.sh``: reads its output folder, prints one table and
writes ``OUT/summary.json``; exits 1 if a check failed.

    python benchmarks/gpu_check_summary.py OUT [--dry-run 0|1]

Reads ``bench.json`` (``hpm bench --json``), ``train/metrics.jsonl`` and ``loader.json`` (the
time-limited run and ``hpm bench --data``), ``resume/metrics.jsonl`` (the stopped and resumed
torchrun run), ``video_bench.json`` (``hpm bench`` on a video preset: videomae against
hpm_efficient) and ``seconds.json`` (the time of each part).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESUME_STEPS = 50
MODEL_BOUND_BELOW = 0.8  # run img/s under this share of the loader's alone: the model is the limit


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if "loss" in r]


def bench_rows(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant and precision of ``hpm bench --json``."""
    rows = []
    for name in bench.get("variants", []):
        for prec, r in bench.get(name, {}).items():
            rows.append({
                "variant": name, "precision": prec, "step_s": r["step_s"], "img_per_s": r["img_per_s"],
                "mfu": r["mfu"], "peak_mem_gb": r.get("peak_mem_gb"), "compile_s": r.get("compile_s"),
            })
    return rows


def throughput(train_records: list[dict[str, Any]], loader: dict[str, Any]) -> dict[str, Any]:
    """The run's images/s (median of its log windows after the first, which holds the start-up
    and compiling) against the loader's alone, and which of the two bounds the run."""
    windows = [r["img_per_s"] for r in train_records[1:]] or [r["img_per_s"] for r in train_records]
    run = statistics.median(windows) if windows else None
    alone = (loader.get("workers") or loader.get("per_worker") or {}).get("img_per_s")
    out: dict[str, Any] = {"run_img_per_s": run, "loader_img_per_s": alone, "steps": len(train_records),
                           "log_windows": len(windows)}
    if run is not None and alone:
        out["run_over_loader"] = run / alone
        out["bound"] = "model" if run < MODEL_BOUND_BELOW * alone else "loader"
    return out


def resume_check(records: list[dict[str, Any]], steps: int = RESUME_STEPS) -> dict[str, Any]:
    """Whether the stopped-and-resumed run logged every step 1..``steps`` exactly once."""
    logged = [int(r["step"]) for r in records]
    ok = sorted(logged) == list(range(1, steps + 1)) and len(set(logged)) == len(logged)
    return {"ok": ok, "last_step": max(logged, default=0), "records": len(logged)}


def video_step(bench: dict[str, Any]) -> dict[str, Any]:
    """Seconds per step of each variant of a video ``hpm bench --json`` and each one's ratio to
    VideoMAE's at the same precision (as ``hpm bench``'s ``<variant>_over_videomae``; None without
    a videomae row); empty without the file."""
    if not bench:
        return {}
    base = bench.get("videomae", {})
    rows = [{"variant": name, "precision": prec, "step_s": r["step_s"],
             "over_videomae": r["step_s"] / base[prec]["step_s"] if prec in base else None}
            for name in bench.get("variants", []) for prec, r in bench.get(name, {}).items()]
    return {"preset": bench["preset"], "batch_size": bench["batch_size"], "img_size": bench["img_size"],
            "num_frames": bench.get("num_frames"), "rows": rows}


def summarise(out: Path, dry_run: bool) -> dict[str, Any]:
    """Everything the check measured, as one JSON-ready dict."""
    bench = json.loads((out / "bench.json").read_text())
    loader = json.loads((out / "loader.json").read_text())
    seconds_file = out / "seconds.json"
    video_file = out / "video_bench.json"
    return {
        "dry_run": dry_run,
        "device": bench["device"],
        "bench": {"preset": bench["preset"], "batch_size": bench["batch_size"], "img_size": bench["img_size"],
                  "peak_source": bench.get("peak_source"), "rows": bench_rows(bench)},
        "throughput": throughput(_records(out / "train" / "metrics.jsonl"), loader),
        "resume": resume_check(_records(out / "resume" / "metrics.jsonl")),
        "video": video_step(json.loads(video_file.read_text()) if video_file.is_file() else {}),
        "seconds": json.loads(seconds_file.read_text()) if seconds_file.is_file() else {},
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    b, t, r = s["bench"], s["throughput"], s["resume"]
    lines = [
        f"gpu_check{' (dry run, CPU)' if s['dry_run'] else ''}: {s['device']}",
        f"(a) step, {b['preset']}, batch {b['batch_size']}, {b['img_size']} px; MFU against: "
        + "; ".join(f"{p} {src}" for p, src in (b["peak_source"] or {}).items()),
        f"    {'variant':24} {'prec':5} {'step s':>8} {'img/s':>8} {'MFU':>5} {'mem GiB':>7} {'compile s':>9}",
    ]
    for row in b["rows"]:
        mem = "n/a" if row["peak_mem_gb"] is None else f"{row['peak_mem_gb']:.1f}"
        comp = "-" if row["compile_s"] is None else f"{row['compile_s']:.0f}"
        lines.append(f"    {row['variant']:24} {row['precision']:5} {row['step_s']:8.3f} {row['img_per_s']:8.1f} "
                     f"{row['mfu']:5.2f} {mem:>7} {comp:>9}")
    run, alone = t["run_img_per_s"], t["loader_img_per_s"]
    if run is not None and alone:
        lines.append(f"(b) pre-training {run:.0f} img/s, loader alone {alone:.0f} img/s "
                     f"({t['run_over_loader']:.2f}): {t['bound']}-bound")
    else:
        lines.append(f"(b) pre-training: no images/s measured (run {run}, loader {alone})")
    lines.append(f"(c) torchrun stop + resume: {'ok' if r['ok'] else 'FAILED'} "
                 f"(last step {r['last_step']}, {r['records']} step records)")
    v = s.get("video") or {}
    if v.get("rows"):
        lines.append(f"(d) video step, {v['preset']}, batch {v['batch_size']}, {v['num_frames']} x {v['img_size']} px, "
                     "mask ratio 0.9:")
        for row in v["rows"]:
            ratio = "" if row["over_videomae"] is None else f"  {row['over_videomae']:.2f}x videomae"
            lines.append(f"    {row['variant']:24} {row['precision']:5} {row['step_s']:8.3f} s/step{ratio}")
    else:
        lines.append("(d) video step: not measured (no video_bench.json)")
    if s["seconds"]:
        lines.append("time: " + ", ".join(f"{k} {v} s" for k, v in s["seconds"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the output folder of gpu_check.sh")
    parser.add_argument("--dry-run", type=int, default=0, choices=[0, 1])
    args = parser.parse_args(argv)
    summary = summarise(args.out, bool(args.dry_run))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    ok = summary["resume"]["ok"] and summary["throughput"]["run_img_per_s"] is not None and summary["bench"]["rows"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
