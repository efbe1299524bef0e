"""``hpm eval segment`` under torchrun (two gloo processes): the same run as one process, and a run
stopped by a signal to one rank resumes to the result of an uninterrupted two-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state
from tests.conftest import TORCHRUN, one_and_two_processes, ranks_env, stderr_tail, torchrun_worker

# No randomness in the crops (the image size, unscaled, unflipped), no BatchNorm or dropout (the
# linear head) and no ignored pixel: one process with batch 4 and two with batch 2 train alike.
SAME_WORK = ("--head", "linear", "crop_size=32", "scale_range=[1.0,1.0]", "hflip=0", "lr=0.05", "warmup_iters=0",
             "eval_every=1", "--epochs", "2", "--precision", "fp32")


def _result(out: Path) -> dict:
    return json.loads(out.read_text())["result"]


@pytest.mark.slow
def test_two_processes_train_as_one(encoder_run: Path, scenes: Path, tmp_path: Path) -> None:
    common = ["eval", "segment", str(encoder_run), "--data-dir", str(scenes), *SAME_WORK]
    one, two = one_and_two_processes(common, tmp_path)
    a, b = _result(one), _result(two)
    assert b["world_size"] == 2 and b["effective_batch"] == a["effective_batch"] == 4 and a["steps"] == b["steps"]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4)
        assert hb["pixel_acc"] == pytest.approx(ha["pixel_acc"], abs=0.2)
        assert hb["miou"] == pytest.approx(ha["miou"], abs=0.5)


@pytest.mark.slow
def test_two_processes_stopped_by_a_signal_to_one_resume_to_the_uninterrupted_result(
    encoder_run: Path, scenes: Path, tmp_path: Path
) -> None:
    def args(out: Path) -> list[str]:
        return ["eval", "segment", str(encoder_run), "--data-dir", str(scenes), "--epochs", "3", "--precision", "fp32",
                "--out", str(out), "crop_size=32", "batch_size=2", "decoder_channels=16", "ckpt_every_steps=1"]

    env, reference, out = ranks_env(), tmp_path / "ref.json", tmp_path / "seg.json"
    subprocess.run([*TORCHRUN, *args(reference)], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen([*TORCHRUN, *args(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(tmp_path / "seg")
        if ckpts and int(ckpts[-1].name.split("_")[1]) >= 3:
            break
        time.sleep(0.005)
    os.kill(torchrun_worker(proc.pid, 1), signal.SIGTERM)  # only rank 1 hears it: both stop at the same step
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "exitcode: 143" in err, stderr_tail(err)
    stopped_at = load_state(latest_checkpoint(tmp_path / "seg"))["step"]
    assert 3 <= stopped_at < 18  # 3 epochs of 24 / (2 x 2) steps
    resumed = subprocess.run([*TORCHRUN, *args(out)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, stderr_tail(resumed.stderr)
    for key in ("miou", "pixel_acc", "per_class_iou", "final_loss", "history", "steps"):
        assert _result(out)[key] == _result(reference)[key], key
