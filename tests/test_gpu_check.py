"""``benchmarks/gpu_check.sh``: the CPU rehearsal (``--dry-run``) runs every part and writes the
summary; without a GPU and without ``--dry-run`` it stops at once and says why."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run")
def test_without_cuda_it_stops_with_a_clear_message(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert "no CUDA device" in out.stderr and "--dry-run" in out.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_unknown_argument_is_refused() -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown argument --fast" in out.stderr


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_the_summary(tmp_path: Path) -> None:
    out_dir = tmp_path / "check"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out_dir)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["dry_run"] is True
    rows = {(r["variant"], r["precision"]) for r in summary["bench"]["rows"]}
    assert rows == {("mae", "fp32"), ("hpm", "fp32"), ("hpm_efficient", "fp32")}
    assert all(r["peak_mem_gb"] is None for r in summary["bench"]["rows"])  # CPU: not measured
    t = summary["throughput"]
    assert t["run_img_per_s"] > 0 and t["loader_img_per_s"] > 0 and t["bound"] in ("model", "loader")
    assert summary["resume"] == {"ok": True, "last_step": 50, "records": 50}
    assert set(summary["seconds"]) == {"bench", "shards", "train", "loader", "resume", "video", "total"}
    assert "(c) torchrun stop + resume: ok" in out.stdout and "-bound" in out.stdout
    video = summary["video"]  # (d): the video preset's step, VideoMAE against the default video HPM
    assert video["preset"] == "video_small" and video["num_frames"] == 16
    by_variant = {r["variant"]: r for r in video["rows"]}
    assert set(by_variant) == {"videomae", "hpm_efficient"} and all(r["step_s"] > 0 for r in video["rows"])
    assert by_variant["videomae"]["over_videomae"] == 1.0
    ratio = by_variant["hpm_efficient"]["over_videomae"]
    assert ratio == by_variant["hpm_efficient"]["step_s"] / by_variant["videomae"]["step_s"]
    assert "(d) video step, video_small" in out.stdout and f"{ratio:.2f}x videomae" in out.stdout
    stopped = (out_dir / "resume_1.out").read_text()
    assert "Re-run the same command to resume" in stopped  # it really was stopped, then resumed
    assert "resuming from" in (out_dir / "resume_2.out").read_text()
