"""Figures kept in the last report (``report_dir/results.json``) for work whose files are gone.

A fresh machine has the report but not ``runs_dir``: the study keeps those runs and floors in its
report and does not redo them (delete an entry from results.json to redo it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.study.files import done_file, read_json
from hpm.study.spec import StudySpec, run_dir


def previous_report(spec: StudySpec) -> dict[str, Any]:
    """The study's last ``results.json`` (empty if missing or written by another study)."""
    prev = read_json(Path(spec.report_dir) / "results.json") or {}
    return prev if prev.get("study") == spec.name else {}


def archived_runs(spec: StudySpec) -> dict[tuple[str, int], dict[str, Any]]:
    """Per-run figures of the last report (``report_dir/results.json``) whose run directories are
    gone, e.g. on a new machine: the study keeps them in its report and does not retrain them
    (delete a run's entry from results.json to retrain it)."""
    out = {}
    for r in previous_report(spec).get("runs", []):
        if not done_file(run_dir(spec, r["variant"], r["seed"])).is_file():
            full = r.get("teacher_rank_spearman") is not None  # reports before teacher_view: full view
            defaults = {"teacher_top25_train": None, "teacher_view": "full" if full else None,
                        "teacher_full_rank_spearman": r.get("teacher_rank_spearman"),
                        "teacher_full_rank_top25": r.get("teacher_rank_top25")}
            out[(r["variant"], int(r["seed"]))] = {**defaults, **r, "archived": True}
    return out


def archived_floors(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """The floors of the last report."""
    return previous_report(spec).get("floors", {})


def kept_floor_finetunes(spec: StudySpec) -> dict[int, float]:
    """Random-init fine-tune top-1 per seed from the last report, under the study's recipe (kept
    like archived runs when the result files are gone, e.g. on a new machine)."""
    kept = (archived_floors(spec).get("random_init") or {}).get("finetune_top1") or {}
    if kept.get("recipe") != spec.eval.finetune_recipe:
        return {}
    return {int(s): float(v) for s, v in (kept.get("per_seed") or {}).items() if v is not None}
