"""Collected figures: per-seed differences between variants."""

from __future__ import annotations

from hpm.study import format_report, seed_differences


def test_seed_differences_pair_runs_of_the_same_seed() -> None:
    runs = [{"variant": v, "seed": s, "knn_top1": k, "linear_top1": lin, "finetune_top1": ft}
            for v, s, k, lin, ft in [("mae", 0, 70.0, 75.0, 80.0), ("mae", 1, 71.0, 76.0, None), ("new", 0, 72.5, 74.0, 81.5),
                                     ("new", 1, 70.0, None, None), ("new", 2, 73.0, 77.0, None)]]
    random_ft = {"per_seed": {"0": 78.0, "1": 77.0}}
    diffs = seed_differences(runs, ["mae"], random_ft)
    assert diffs == [
        {"variant": "mae", "seed": 0, "finetune_top1_minus_random_init": 2.0},  # the reference's own gain
        {"variant": "new", "seed": 0, "finetune_top1_minus_random_init": 3.5, "knn_top1_minus_mae": 2.5,
         "linear_top1_minus_mae": -1.0, "finetune_top1_minus_mae": 1.5},
        {"variant": "new", "seed": 1, "finetune_top1_minus_random_init": None, "knn_top1_minus_mae": -1.0,
         "linear_top1_minus_mae": None, "finetune_top1_minus_mae": None},
        {"variant": "new", "seed": 2, "finetune_top1_minus_random_init": None, "knn_top1_minus_mae": None,
         "linear_top1_minus_mae": None, "finetune_top1_minus_mae": None},  # no MAE seed 2
    ]
    text = format_report({"study": "x", "description": "", "knn_k": 20, "variants": [], "runs": [], "floors": {},
                          "differences": diffs})
    assert "| new | 0 | +2.50 | -1.00 | +1.50 | +3.50 |" in text and "| new | 1 | -1.00 | – | – | – |" in text
    assert "| mae | 0 | – | – | – | +2.00 |" in text
    assert "| new | 2 |" not in text  # nothing to compare
    plain = seed_differences([r for r in runs if r["variant"] != "mae" or r["seed"]], ["mae"])  # no fine-tunes compared
    text = format_report({"study": "x", "description": "", "knn_k": 20, "variants": [], "runs": [], "floors": {},
                          "differences": [d for d in plain if d["seed"] == 1]})
    assert "| new | 1 | -1.00 | – |" in text and "fine-tune" not in text.split("Per-seed")[1].split("Per run")[0]
