"""``hpm eval detect`` on the scenes: the result JSON and the predictions beside it, the exported
detector rebuilt from its JSON, a SIGKILLed run re-run to the result of an uninterrupted one,
another recipe refused and a finished run only reported."""

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
from hpm.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state, read_weights
from hpm.eval.detect import load_detector, to_coco_results
from hpm.eval.detect.data import DetectionDataset, coco_paths, load_detect_data
from hpm.eval.detect.recipes import DetectConfig

STEPS = 2 * (8 // 2)  # 2 epochs of 4 steps
COMPARED = ("box", "mask", "detections", "final_loss", "history", "steps")


def _args(run: Path, scenes: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "detect", str(run), "--data-dir", str(scenes), "--epochs", "2", "--labels", "8", "--precision", "fp32",
        "--out", str(out), "batch_size=2", "eval_every=1", "ckpt_every_steps=2", "score_thresh=0.001", *extra,
    ]


def _env() -> dict[str, str]:
    # the subprocess computes with the thread count of this process (the reference runs here)
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def _result(out: Path) -> dict:
    return json.loads(out.read_text())["result"]


@pytest.fixture(scope="module")
def reference(encoder_run: Path, scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The result file of an uninterrupted run."""
    out = tmp_path_factory.mktemp("detref") / "detect.json"
    assert main(_args(encoder_run, scenes, out)) == 0
    return out


def test_the_result_json_holds_the_scores_recipe_and_history(reference: Path) -> None:
    record = json.loads(reference.read_text())
    assert record["protocol"] == "detect" and record["data"]["num_train"] == 8 and record["data"]["num_val"] == 8
    result = record["result"]
    assert {"box", "mask", "detections", "history", "recipe", "steps", "final_loss", "train_s"} <= set(result)
    for kind in ("box", "mask"):
        assert set(result[kind]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert 0 <= result[kind]["AP"] <= result[kind]["AP50"] <= 1
    assert result["steps"] == STEPS and [h["epoch"] for h in result["history"]] == [1, 2]
    assert result["history"][-1]["box_ap"] == result["box"]["AP"] and result["recipe"]["image_size"] == 64
    predictions = json.loads(Path(record["predictions"]).read_text())
    assert Path(record["predictions"]) == reference.with_name("detect.predictions.json")
    picture = Path(record["picture"])
    assert picture == reference.with_name("detect.predictions.png") and picture.is_file()
    assert len(predictions) == result["detections"]
    assert {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(predictions[0])


def test_the_exported_detector_rebuilds(reference: Path, scenes: Path) -> None:
    record = json.loads(reference.read_text())
    export = Path(record["export"])
    assert export == reference.with_suffix("") / "detector.json" and (export.parent / "detector.safetensors").is_file()
    model = load_detector(export)
    final = read_weights(latest_checkpoint(reference.with_suffix("")) / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in final.items())
    spec = json.loads(export.read_text())
    data = load_detect_data(coco_paths(scenes, (None, None), (None, None)), 1, tuple(spec["mean"]), tuple(spec["std"]))
    image, image_id = DetectionDataset(data.val, data, DetectConfig(), train=False)[0]
    with torch.no_grad():
        (output,) = model([image])
    stored = [p for p in json.loads(Path(record["predictions"]).read_text()) if p["image_id"] == image_id]
    assert to_coco_results(output, image_id, data.cat_ids) == stored


def test_a_killed_run_resumes_to_the_uninterrupted_result(
    encoder_run: Path, scenes: Path, reference: Path, tmp_path: Path
) -> None:
    out, det_dir = tmp_path / "eval" / "det.json", tmp_path / "eval" / "det"  # the directory: the path without .json
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *_args(encoder_run, scenes, out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(det_dir)
        if ckpts and int(ckpts[-1].name.split("_")[1]) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = load_state(latest_checkpoint(det_dir))["step"]
    assert 2 <= killed_at < STEPS and not out.exists(), "the run must be interrupted part-way"
    done = subprocess.run([sys.executable, "-m", "hpm.cli", *_args(encoder_run, scenes, out)], env=_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming the detection fine-tune from {det_dir / 'checkpoints'}" in done.stderr
    for key in COMPARED:
        assert _result(out)[key] == _result(reference)[key], key
    predictions = out.with_name("det.predictions.json").read_text()
    assert predictions == reference.with_name("detect.predictions.json").read_text()


def test_another_recipe_is_refused_and_a_finished_run_is_reported(
    encoder_run: Path, scenes: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    stored = _result(reference)
    assert main(_args(encoder_run, scenes, reference)) == 0  # finished: reported, not trained
    assert "detection box AP" in capsys.readouterr().out
    assert _result(reference) == stored  # train_s included: the stored result
    assert main(_args(encoder_run, scenes, reference, "lr=1e-2")) == 2
    err = capsys.readouterr().err
    assert "holds a finished detection fine-tune with another recipe or source" in err
    assert "recipe.lr: 0.001 -> 0.01" in err
