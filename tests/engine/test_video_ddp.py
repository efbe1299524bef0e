"""Video pre-training under torchrun with 2 gloo processes on the CPU matches one process with
the same global batch: the same losses and, to float summation order, the same final weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hpm.data.video import MovingOptions, write_moving
from hpm.engine.checkpoint import latest_checkpoint
from hpm.engine.logger import read_metrics
from tests.conftest import assert_no_gloo_threads, needs_fmnist, ranks_env, stderr_tail, torchrun_probed
from tests.data.video.conftest import needs_ffmpeg

pytestmark = [needs_fmnist, needs_ffmpeg, pytest.mark.slow]
# The two runs differ only in float summation order (the gradient all-reduce and per-rank loss
# means), so losses agree to about 1e-6 and weights after a few AdamW steps to about 1e-5.
RTOL = 1e-4
WEIGHT_ATOL = 1e-4
STEPS = 6  # 16 clips, global batch 8, 3 epochs


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training clips of 8 frames at 16 px in DIR/train/<motion>/."""
    out = tmp_path_factory.mktemp("moving") / "data"
    write_moving(out, MovingOptions(num_train=16, num_val=0, frames=8, size=16), progress=False)
    return out


def _args(root: Path, out: Path, strategy: str, batch_size: int) -> list[str]:
    """``hpm pretrain`` arguments of a tiny seeded video run: 4 frames of 16 px, 2 x 4 x 4 tubelets (32 tokens)."""
    sections: dict[str, dict[str, Any]] = {
        "model": {"num_frames": 4, "tubelet_size": 2, "img_size": 16, "patch_size": 4, "embed_dim": 32,
                  "depth": 1, "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
        "mask": {"strategy": strategy, "ratio": 0.75},
        "loss": {"predictor": "none" if strategy == "tube" else "relative"},
        "data": {"channels": 1, "num_workers": 0, "frame_stride": 2},
        "train": {"epochs": 3, "batch_size": batch_size, "log_every": 1, "precision": "fp32",
                  "warmup_epochs": 0.5, "blr": 1.5e-3, "seed": 3},
        "eval": {"knn_at_end": False, "figures_at_end": False},
    }
    overrides = [f"{s}.{k}={json.dumps(v)}" for s, values in sections.items() for k, v in values.items()]
    return ["pretrain", "--preset", "video_small", "--data-dir", str(root), "--output-dir", str(out), *overrides]


@pytest.mark.parametrize("strategy", ["hpm", "tube", "hpm_tube"])
def test_two_gloo_processes_match_one_process_on_clips(clips: Path, tmp_path: Path, strategy: str) -> None:
    env = ranks_env()
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one = subprocess.run([sys.executable, "-m", "hpm.cli", *_args(clips, single, strategy, 8)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, stderr_tail(one.stderr)
    two = subprocess.run([*torchrun_probed(tmp_path), *_args(clips, ddp, strategy, 4)], env=env,
                         capture_output=True, text=True, timeout=300)  # 2 x 4 = the same global batch of 8
    assert two.returncode == 0, stderr_tail(two.stderr)
    assert_no_gloo_threads(tmp_path)
    a = [r for r in read_metrics(single / "metrics.jsonl") if "loss" in r]
    b = [r for r in read_metrics(ddp / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == STEPS
    keys = ["loss", "loss_rec", "lr"] + (["loss_pred"] if strategy != "tube" else [])
    for key in keys:
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=RTOL, atol=0, err_msg=key)
    ckpt_a, ckpt_b = latest_checkpoint(single), latest_checkpoint(ddp)
    assert ckpt_a is not None and ckpt_b is not None and ckpt_a.name == ckpt_b.name
    want, got = load_file(str(ckpt_a / "model.safetensors")), load_file(str(ckpt_b / "model.safetensors"))
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=RTOL, atol=WEIGHT_ATOL, msg=name)
