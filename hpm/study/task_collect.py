"""The task figures of a study's results (``eval.tasks``): per run, per variant (mean, std, n and
per seed), the random-init floors per seed, and per-seed differences.

Only a study with ``eval.tasks`` gets these keys; the results of other studies are left as they were.
"""

from __future__ import annotations

from typing import Any

from hpm.study.tasks import figure, floor_task_file, task_file
from hpm.study.few_labels import kept_floor_figure
from hpm.study.files import eval_file, read_json
from hpm.study.few_labels_collect import per_seed_cell
from hpm.study.spec import StudySpec, run_dir


def task_columns(spec: StudySpec) -> list[tuple[str, Any, str]]:
    """Every task figure of the study as ``(key, evaluation, dotted path in its result)``."""
    return [(key, d, path) for d in spec.eval.tasks for key, path in d.figures.items()]


OBJECTNESS = ("teacher_object_auc", "real_object_auc")  # hpm/study/objectness.py


def _run_figures(spec: StudySpec, runs: list[dict[str, Any]]) -> None:
    """Each run row gets its task and objectness figures (an archived row keeps those of the last report)."""
    for r in runs:
        d = run_dir(spec, r["variant"], r["seed"])
        for key, task, path in task_columns(spec):
            if r.get("archived"):
                r.setdefault(key, None)
            else:
                r[key] = figure(task_file(d, task), path)
        found = read_json(eval_file(d, "objectness")) or {}
        for key in OBJECTNESS:
            r[key] = r.get(key) if r.get("archived") else found.get(key)


def _variant_figures(spec: StudySpec, results: dict[str, Any]) -> None:
    for row in results["variants"]:
        if not row.get("seeds_done"):
            continue
        mine = sorted((r for r in results["runs"] if r["variant"] == row["variant"]), key=lambda r: r["seed"])
        for key in [k for k, _, _ in task_columns(spec)] + list(OBJECTNESS):
            row[key] = per_seed_cell({str(r["seed"]): r.get(key) for r in mine})


def _floor_figures(spec: StudySpec, floors: dict[str, Any]) -> None:
    """Random init, one figure per init seed (from its file, or else the last report)."""
    for key, task, path in task_columns(spec):
        values = {}
        for s in spec.eval.task_floor_seeds:
            value = figure(floor_task_file(spec, task, s), path)
            values[str(s)] = value if value is not None else kept_floor_figure(spec, "random_init", key, s)
        floors["random_init"][key] = per_seed_cell(values)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def task_differences(spec: StudySpec, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per run: each task figure minus the random-init floor of the same seed, and (variants not
    in ``compare_to``) minus each ``compare_to`` variant's run of the same seed."""
    floor = results["floors"]["random_init"]
    by_key = {(r["variant"], r["seed"]): r for r in results["runs"]}
    out = []
    for r in results["runs"]:
        row: dict[str, Any] = {"variant": r["variant"], "seed": r["seed"]}
        for key, _, _ in task_columns(spec):
            row[f"{key}_minus_random_init"] = _minus(r.get(key), floor[key]["per_seed"].get(str(r["seed"])))
            for ref in ([] if r["variant"] in spec.compare_to else spec.compare_to):
                row[f"{key}_minus_{ref}"] = _minus(r.get(key), (by_key.get((ref, r["seed"])) or {}).get(key))
        out.append(row)
    return out


def add_task_figures(spec: StudySpec, results: dict[str, Any]) -> None:
    """Add the task keys (``seg_upernet_miou``, ...) to :func:`~hpm.study.collect.collect`'s
    results, and ``tasks`` (the evaluations, floor seeds, per-seed differences) at the top."""
    if not spec.eval.tasks:
        return
    _run_figures(spec, results["runs"])
    _variant_figures(spec, results)
    _floor_figures(spec, results["floors"])
    results["tasks"] = {
        "evaluations": [d.model_dump(mode="json") for d in spec.eval.tasks],
        "label_seed": spec.eval.seed, "floor_seeds": spec.eval.task_floor_seeds,
        "differences": task_differences(spec, results),
    }
