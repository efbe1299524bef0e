"""The Markdown report, and reports rebuilt from their own results.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hpm.study import collect, format_report, load_study, write_report
from tests.study.helpers import write_study


def test_study_report_lists_variants_not_run_yet(tmp_path: Path) -> None:
    path = write_study(tmp_path, [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0, 1]}],
                        floors=False)
    text = format_report(collect(load_study(path)))
    assert "| mae | 0/2 | – | not run yet |" in text


@pytest.mark.parametrize("study", ["fmnist_reference", "fmnist_targets"])
def test_a_shipped_report_rebuilds_from_its_own_results_json(tmp_path: Path, study: str) -> None:
    """With runs_dir gone, ``--report-only`` rebuilds the report from the archived runs of its
    results.json: the Markdown as shipped, and a second rebuild is byte-identical to the first."""
    shipped = Path("docs/study") / study
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    shutil.copy(shipped / "results.json", first / "results.json")
    overrides = {"runs_dir": str(tmp_path / "no_runs")}
    write_report(load_study(f"configs/study/{study}.yaml", {**overrides, "report_dir": str(first)}))
    assert (first / "results.md").read_bytes() == (shipped / "results.md").read_bytes()
    second.mkdir()
    shutil.copy(first / "results.json", second / "results.json")
    write_report(load_study(f"configs/study/{study}.yaml", {**overrides, "report_dir": str(second)}))
    for name in ("results.json", "results.md"):
        assert (second / name).read_bytes() == (first / name).read_bytes()
    assert not (tmp_path / "no_runs").exists() and not (first / "curves.png").exists()
