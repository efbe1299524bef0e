"""``hpm eval detect``'s command line: COCO files given one by one, the floor (a random encoder of
a preset), overrides among the flags, and an unknown key refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpm.cli import main


def test_the_floor_runs_on_files_given_one_by_one(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    ann = scenes / "annotations"
    assert main([
        "eval", "detect", "--random-init", "--preset", "small", "--train-json", str(ann / "instances_training.json"),
        "--train-images", str(scenes / "images" / "training"), "--val-json", str(ann / "instances_validation.json"),
        "--val-images", str(scenes / "images" / "validation"), "--out", str(out), "--epochs", "1", "--labels", "4",
        "batch_size=2", "rpn_proposals=50",
    ]) == 0
    record = json.loads(out.read_text())
    assert record["source"]["random_init"] and record["source"]["model"]["embed_dim"] == 192
    assert record["data"]["num_train"] == 4 and record["data"]["labels"] == 4 and record["data"]["channels"] == 3
    assert record["result"]["recipe"]["rpn_proposals"] == 50 and record["result"]["steps"] == 2
    assert (tmp_path / "floor" / "checkpoints").is_dir() and (tmp_path / "floor" / "detector.json").is_file()


def test_an_unknown_key_and_a_missing_split_are_refused(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "det.json"
    assert main(["eval", "detect", "--random-init", "--data-dir", str(scenes), "--out", str(out), "anchors=3"]) == 2
    assert "unknown detection key 'anchors'" in capsys.readouterr().err
    assert main(["eval", "detect", "--random-init", "--train-json", "x.json", "--out", str(out)]) == 2
    assert "give --data-dir, or the training split's JSON and image folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_preset_with_a_checkpoint_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from hpm.cli import main

    out = tmp_path / "r.json"
    assert main(["eval", "detect", str(tmp_path), "--preset", "small64", "--data-dir", "d", "--out", str(out)]) == 2
    assert "--preset only applies without a checkpoint" in capsys.readouterr().err
    assert not out.exists()
