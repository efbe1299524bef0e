"""Figures of an earlier report whose files are gone are kept, not redone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpm.study import collect, load_study, run_study
from tests.study.helpers import write_study


def test_runs_of_an_earlier_report_whose_directories_are_gone_are_kept_not_retrained(tmp_path: Path) -> None:
    """A fresh machine has the report but not runs_dir: the study keeps those runs (and floors)
    in its report, marked archived, and trains nothing for them."""
    path = write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1]}])
    spec = load_study(path)
    run = {"variant": "mae", "seed": 0, "epochs": 2, "precision": "fp32", "knn_top1": 70.0, "linear_top1": 75.0,
           "finetune_top1": None, "pred_spearman": None, "teacher_spearman_train": None,
           "teacher_rank_spearman": None, "teacher_rank_top25": None, "student_rank_spearman": None,
           "student_masked_spearman": None, "real_retest_spearman": None, "teacher_masked_avg_spearman": None,
           "teacher_masked_avg_top25": None, "final_loss_rec": 0.5, "img_per_s": 100.0, "threads": 2,
           "train_time_s": 60.0, "est_time_s": 60.0}
    floors = {"random_init": {"knn_top1": 60.0, "linear_top1": 65.0}, "raw_pixels": {"knn_top1": 80.0, "linear_top1": 81.0}}
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [run], "floors": floors}))

    results = collect(spec)
    kept = results["runs"]
    assert len(kept) == 1 and kept[0]["archived"] is True and kept[0]["knn_top1"] == 70.0
    assert kept[0]["teacher_top25_train"] is None  # keys added since are filled
    no_finetune = {kind: {**row, "finetune_top1": None} for kind, row in floors.items()}  # none was kept
    assert results["floors"] == no_finetune
    mae = results["variants"][0]
    assert mae["seeds_done"] == 1 and mae["knn_top1"]["mean"] == 70.0
    run_study(spec, only=["mae"], max_jobs=0)  # nothing to train or evaluate: floors are kept, seed 1 not started
    assert not (tmp_path / "runs" / "floors").exists() and not (tmp_path / "runs" / "mae").exists()
    again = json.loads((report / "results.json").read_text())
    assert again["runs"][0]["knn_top1"] == 70.0 and again["floors"] == no_finetune
    assert not (report / "curves.png").exists()  # no curves of runs that are not here
    # another study's report is not taken for this one's
    (report / "results.json").write_text(json.dumps({"study": "other", "runs": [run], "floors": floors}))
    assert collect(spec)["runs"] == []


def test_random_init_fine_tunes_of_an_earlier_report_are_kept_per_seed(tmp_path: Path) -> None:
    """Floor fine-tunes finished on an earlier machine stay in the report (per seed, same recipe);
    only the missing seeds are fine-tuned, and a kept figure of another recipe is not taken."""
    path = write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0]}],
                        floor_finetune_seeds=[0, 1])
    spec = load_study(path)
    floors = {"random_init": {"knn_top1": 60.0, "linear_top1": 65.0,
                              "finetune_top1": {"mean": 70.0, "std": None, "n": 1, "recipe": "reference",
                                                "per_seed": {"0": 70.0, "1": None}}},
              "raw_pixels": {"knn_top1": 80.0, "linear_top1": 81.0, "finetune_top1": None}}
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [], "floors": floors}))
    kept = collect(spec)["floors"]["random_init"]["finetune_top1"]
    assert kept["n"] == 1 and kept["mean"] == 70.0 and kept["per_seed"] == {"0": 70.0, "1": None}

    run_study(spec, only=["floors"], max_jobs=0)
    floor_dir = tmp_path / "runs" / "floors"
    assert not (floor_dir / "random_init_finetune_reference_seed_0.json").exists()  # kept, not redone
    seed_1 = json.loads((floor_dir / "random_init_finetune_reference_seed_1.json").read_text())["result"]["top1"]
    ft = json.loads((report / "results.json").read_text())["floors"]["random_init"]["finetune_top1"]
    assert ft["n"] == 2 and ft["per_seed"] == {"0": 70.0, "1": seed_1}
    assert ft["mean"] == pytest.approx((70.0 + seed_1) / 2)

    floors["random_init"]["finetune_top1"]["recipe"] = "small"  # another recipe's figure is not this one's
    (report / "results.json").write_text(json.dumps({"study": "tiny", "runs": [], "floors": floors}))
    assert collect(spec)["floors"]["random_init"]["finetune_top1"]["per_seed"] == {"0": None, "1": seed_1}
