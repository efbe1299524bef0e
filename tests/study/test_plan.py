"""The order the study's runs go in."""

from __future__ import annotations

from pathlib import Path

from hpm.study import load_study, plan
from tests.study.helpers import write_study


def test_plan_runs_priority_first_then_seed_major(tmp_path: Path) -> None:
    path = write_study(tmp_path, [
        {"name": "a", "config": "configs/ablations/mae.yaml", "seeds": [0, 1], "priority": 0},
        {"name": "b", "config": "configs/ablations/easy_to_hard.yaml", "seeds": [0, 1, 2], "priority": 0},
        {"name": "c", "config": "configs/ablations/hardest.yaml", "seeds": [5]},
    ])
    order = [(j.variant.name, j.seed) for j in plan(load_study(path))]
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("b", 2), ("c", 5)]
    job = plan(load_study(path))[-1]
    assert job.run_dir == tmp_path / "runs" / "c" / "seed_5"

