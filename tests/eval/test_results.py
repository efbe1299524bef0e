"""Result files: where each variant goes, atomic JSON with provenance."""

from __future__ import annotations

import json
from pathlib import Path

from hpm.eval.results import RANDOM_INIT_DIR, result_path, summary_line, write_result


def test_result_paths(tmp_path: Path) -> None:
    assert result_path("knn", tmp_path) == tmp_path / "eval" / "knn.json"
    assert result_path("knn", tmp_path, pool="avg") == tmp_path / "eval" / "knn_avg.json"
    assert result_path("linear", tmp_path, weights="teacher") == tmp_path / "eval" / "linear_teacher.json"
    assert result_path("finetune", tmp_path, weights="random", pool="avg") == tmp_path / "eval" / "finetune_random_init.json"
    assert result_path("knn", None, weights="random", preset="vit_b16") == RANDOM_INIT_DIR / "vit_b16" / "eval" / "knn_random_init.json"


def test_write_result_and_summary(tmp_path: Path) -> None:
    record = {
        "protocol": "linear",
        "source": {"random_init": False, "weights": "student", "step": 12},
        "data": {"num_train": 100, "num_test": 50, "test_split": "test"},
        "result": {"top1": 81.234, "train_top1": 90.0, "pool": "cls", "probe": {"epochs": 100}},
        "seconds": 3.21,
    }
    path = write_result(tmp_path / "eval" / "linear.json", record)
    saved = json.loads(path.read_text())
    assert saved["result"]["top1"] == 81.234 and {"created", "versions"} <= set(saved)
    assert saved["versions"]["torch"] and [p.name for p in path.parent.iterdir()] == ["linear.json"]
    line = summary_line(record)
    assert line.startswith("linear probe top-1 81.23% (train 90.00%, cls, 100 epochs)")
    assert "100 train / 50 test" in line and "student @ step 12" in line and line.endswith("3.2 s")
