"""benchmarks/video_loader.py: the clip loader benchmark runs end to end on 8 tiny clips."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from tests.conftest import needs_fmnist
from tests.data.video.conftest import needs_ffmpeg

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "video_loader.py"
pytestmark = [needs_fmnist, needs_ffmpeg]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("video_loader", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_moving_clips_per_second_per_worker_count(tmp_path: Path) -> None:
    out = tmp_path / "video_loader.json"
    _module().main(["--clips", "8", "--workers", "0", "--batch-size", "4", "--batches", "2", "--parts", "4",
                    "--large-videos", "0", "--step-variants", "", "--json", str(out)])
    result = json.loads(out.read_text())
    (case,) = result["cases"]
    assert case["name"] == "moving" and (case["num_frames"], case["img_size"], case["channels"]) == (16, 32, 1)
    assert list(case["loader"]) == ["0"]
    timing = case["loader"]["0"]
    assert timing["clips"] == 8 and timing["seconds"] > 0 and timing["clips_per_s"] > 0
    assert case["parts"]["decode_ms"] > 0 and case["parts"]["transform_ms"] > 0
    assert result["step"] == {} and case["worker_over_step"] == {} and case["workers_for_gpu"] is None


def test_synthetic_videos_are_deterministic_and_move() -> None:
    shapes_video = _module().shapes_video
    a = shapes_video(np.random.default_rng(0), 4, 32)
    b = shapes_video(np.random.default_rng(0), 4, 32)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.uint8
    assert bool((a == b).all()) and not bool((a[0] == a[-1]).all())
