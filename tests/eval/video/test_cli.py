"""``hpm eval knn|linear`` on a video run: both label kinds, the result files, the random floor,
and the flags a run or its data cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpm.cli import main
from hpm.eval.run import EvalOptions, run_eval
from hpm.eval.video import VideoOptions
from tests.eval.conftest import random_run  # noqa: F401 - an image run
from tests.eval.video.conftest import NUM_TRAIN, NUM_VAL, video_config


def _record(path: Path) -> dict:
    return json.loads(path.read_text())


def test_knn_on_motion_and_class_labels_writes_the_image_protocol_record(
    video_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top1 = {}
    for label in ("motion", "class"):
        out = tmp_path / f"knn_{label}.json"
        assert main(["eval", "knn", str(video_run), "--label", label, "--ks", "1,5", "--precision", "fp32",
                     "--out", str(out)]) == 0
        record = _record(out)
        assert record["protocol"] == "knn" and record["source"]["step"] == 7
        assert record["data"]["label"] == label and record["data"]["num_classes"] == (8 if label == "motion" else 10)
        assert record["data"]["views"] == record["result"]["views"] == {
            "test_clips": 2, "test_crops": 1, "num_views": 2, "crops_coincide": True, "num_frames": 8, "frame_stride": 1}
        result = record["result"]
        assert set(result["top1"]) == {"1", "5"} and (result["num_train"], result["num_test"]) == (NUM_TRAIN, NUM_VAL)
        top1[label] = result["top1"]
    assert "k-NN top-1 (cls, T=0.07): k=1" in capsys.readouterr().out
    assert top1["motion"] != top1["class"]  # other labels on the same features


def test_linear_probe_on_both_label_kinds_with_default_result_files(video_run: Path) -> None:
    for label, name in ((None, "linear_avg.json"), ("class", "linear_avg_class.json")):
        args = ["eval", "linear", str(video_run), "--pool", "avg", "--epochs", "5", "--precision", "fp32",
                "--test-clips", "1"]
        assert main(args + (["--label", label] if label else [])) == 0
        record = _record(video_run / "eval" / name)
        assert record["data"]["label"] == (label or "folder") and record["result"]["views"]["test_clips"] == 1
        assert 0.0 <= record["result"]["top1"] <= 100.0 and record["result"]["probe"]["epochs"] == 5


def test_a_random_encoder_is_the_floor(clips: Path, tmp_path: Path) -> None:
    opts = EvalOptions(random_init=True, cfg=video_config(clips), ks=(5,), precision="fp32", out=tmp_path / "r.json",
                       video=VideoOptions(label="motion"))
    record, path = run_eval("knn", None, opts)
    assert path == tmp_path / "r.json" and record["source"]["random_init"] and record["source"]["step"] is None
    assert record["data"]["label"] == "motion" and set(record["result"]["top1"]) == {"5"}


def test_a_bad_label_is_one_line_and_exit_2(video_run: Path, clips: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "knn", str(video_run), "--label", "colour", "--out", str(tmp_path / "k.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown --label 'colour'; use motion or class" in err[0]
    (tmp_path / "bare").mkdir()
    for split in ("train", "val"):
        (tmp_path / "bare" / split).symlink_to(clips / split)  # the clips without their listing
    assert main(["eval", "linear", str(video_run), "--label", "class", "--data-dir", str(tmp_path / "bare"),
                 "--out", str(tmp_path / "l.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--label class reads each clip's class from" in err[0], err


def test_video_flags_on_an_image_run_are_refused(random_run: Path, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "knn", str(random_run), "--test-clips", "3", "--out", str(tmp_path / "k.json")]) == 2
    assert "--label, --test-clips, --test-crops and the video recipes apply to video runs" in capsys.readouterr().err
