"""``hpm eval segment`` on the scenes: the result JSON, a SIGKILLed run re-run to the result of an
uninterrupted one, another recipe refused and a finished run only reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpm.cli import main
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state

STEPS = 3 * (24 // 2)  # 3 epochs of 12 steps
COMPARED = ("miou", "pixel_acc", "per_class_iou", "final_loss", "history", "steps")


def _args(run: Path, scenes: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "segment", str(run), "--data-dir", str(scenes), "--epochs", "3", "--precision", "fp32",
        "--out", str(out), "crop_size=32", "batch_size=2", "decoder_channels=16", "eval_every=1",
        "ckpt_every_steps=2", *extra,
    ]


def _env() -> dict[str, str]:
    # the subprocess computes with the thread count of this process (the reference runs here)
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def _result(out: Path) -> dict:
    return json.loads(out.read_text())["result"]


@pytest.fixture(scope="module")
def reference(encoder_run: Path, scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The result file of an uninterrupted run."""
    out = tmp_path_factory.mktemp("segref") / "segment.json"
    assert main(_args(encoder_run, scenes, out)) == 0
    return out


def test_the_result_json_holds_the_scores_recipe_and_history(reference: Path) -> None:
    record = json.loads(reference.read_text())
    assert record["protocol"] == "segment" and record["data"]["num_train"] == 24 and record["data"]["num_val"] == 8
    result = record["result"]
    assert {"miou", "pixel_acc", "per_class_iou", "history", "recipe", "steps", "final_loss"} <= set(result)
    assert len(result["per_class_iou"]) == 11 and result["steps"] == STEPS
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3] and result["history"][-1]["miou"] == result["miou"]
    assert result["recipe"]["head"] == "upernet" and result["recipe"]["crop_size"] == 32
    assert 0 <= result["miou"] <= 100 and 0 <= result["pixel_acc"] <= 100


def test_the_exported_segmenter_scores_as_the_run_did_and_a_picture_shows_its_predictions(
    reference: Path, scenes: Path
) -> None:
    from PIL import Image

    from hpm.eval.segment import evaluate_segmenter_file

    record = json.loads(reference.read_text())
    export = Path(record["export"])
    assert export == reference.with_suffix("") / "segmenter.json" and export.with_suffix(".safetensors").is_file()
    assert evaluate_segmenter_file(export, scenes)["miou"] == pytest.approx(record["result"]["miou"], abs=1e-6)
    with Image.open(record["picture"]) as picture:  # 4 rows of image, ground truth, prediction
        assert picture.size == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2)


def test_a_killed_run_resumes_to_the_uninterrupted_result(
    encoder_run: Path, scenes: Path, reference: Path, tmp_path: Path
) -> None:
    out, seg_dir = tmp_path / "eval" / "seg.json", tmp_path / "eval" / "seg"  # the directory: the path without .json
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *_args(encoder_run, scenes, out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(seg_dir)
        if ckpts and int(ckpts[-1].name.split("_")[1]) >= 4:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = load_state(latest_checkpoint(seg_dir))["step"]
    assert 4 <= killed_at < STEPS and not out.exists(), "the run must be interrupted part-way"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_args(encoder_run, scenes, out)], env=_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming the segmentation fine-tune from {seg_dir / 'checkpoints'}" in done.stderr
    for key in COMPARED:
        assert _result(out)[key] == _result(reference)[key], key


def test_another_recipe_is_refused_and_a_finished_run_is_reported(
    encoder_run: Path, scenes: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    stored = _result(reference)
    assert main(_args(encoder_run, scenes, reference)) == 0  # finished: reported, not trained
    assert "segmentation (upernet) mIoU" in capsys.readouterr().out
    assert _result(reference) == stored  # train_s included: the stored result
    assert main(_args(encoder_run, scenes, reference, "lr=1e-2")) == 2
    err = capsys.readouterr().err
    assert "holds a finished segmentation fine-tune with another recipe or source" in err
    assert "recipe.lr: 0.001 -> 0.01" in err
