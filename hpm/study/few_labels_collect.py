"""The few-label figures of a study's results: per run, per variant (mean, std, n and per seed),
under the floors, per-seed differences, and the budget curve.

Only a study with ``eval.labels`` or a ``budget_curve`` gets these keys; the results of other
studies are left exactly as they were.
"""

from __future__ import annotations

import statistics
from typing import Any

from hpm.study.budget import budget_rows
from hpm.study.few_labels import (
    PIXEL_PROTOCOLS,
    PROTOCOL_ORDER,
    floor_label_file,
    kept_floor_figure,
    label_columns,
    label_file,
    top1_of,
)
from hpm.study.spec import StudySpec, run_dir


def per_seed_cell(values: dict[str, float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "per_seed"}`` of the figures that exist (std needs two)."""
    present = [v for v in values.values() if v is not None]
    return {"mean": statistics.fmean(present) if present else None,
            "std": statistics.stdev(present) if len(present) > 1 else None,
            "n": len(present), "per_seed": dict(values)}


def _run_figures(spec: StudySpec, runs: list[dict[str, Any]]) -> None:
    """Each run row gets its few-label figures (an archived row keeps those of the last report)."""
    for r in runs:
        for key, protocol, n in label_columns(spec):
            if r.get("archived"):
                r.setdefault(key, None)
            else:
                r[key] = top1_of(spec, label_file(spec, run_dir(spec, r["variant"], r["seed"]), protocol, n), protocol)


def _variant_figures(spec: StudySpec, results: dict[str, Any]) -> None:
    for row in results["variants"]:
        if not row.get("seeds_done"):
            continue
        mine = sorted((r for r in results["runs"] if r["variant"] == row["variant"]), key=lambda r: r["seed"])
        for key, _, _ in label_columns(spec):
            row[key] = per_seed_cell({str(r["seed"]): r.get(key) for r in mine})


def _floor_figures(spec: StudySpec, floors: dict[str, Any]) -> None:
    """Random init per init seed and raw pixels (one figure, keyed by the label set's seed)."""
    for key, protocol, n in label_columns(spec):
        values = {}
        for s in spec.eval.labels_floor_seeds:
            value = top1_of(spec, floor_label_file(spec, "random_init", protocol, n, s), protocol)
            values[str(s)] = value if value is not None else kept_floor_figure(spec, "random_init", key, s)
        floors["random_init"][key] = per_seed_cell(values)
        if protocol in PIXEL_PROTOCOLS:
            value = top1_of(spec, floor_label_file(spec, "raw_pixels", protocol, n), protocol)
            value = value if value is not None else kept_floor_figure(spec, "raw_pixels", key, None)
            floors["raw_pixels"][key] = per_seed_cell({str(spec.eval.seed): value})


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def label_differences(spec: StudySpec, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per run: each few-label figure minus the random-init floor of the same seed, minus raw
    pixels (k-NN and probe), and (variants not in ``compare_to``) minus each ``compare_to``
    variant's run of the same seed."""
    floors = results["floors"]
    by_key = {(r["variant"], r["seed"]): r for r in results["runs"]}
    out = []
    for r in results["runs"]:
        row: dict[str, Any] = {"variant": r["variant"], "seed": r["seed"]}
        for key, protocol, _ in label_columns(spec):
            random_init = (floors["random_init"][key]["per_seed"]).get(str(r["seed"]))
            row[f"{key}_minus_random_init"] = _minus(r.get(key), random_init)
            if protocol in PIXEL_PROTOCOLS:
                row[f"{key}_minus_raw_pixels"] = _minus(r.get(key), floors["raw_pixels"][key]["mean"])
            for ref in ([] if r["variant"] in spec.compare_to else spec.compare_to):
                row[f"{key}_minus_{ref}"] = _minus(r.get(key), (by_key.get((ref, r["seed"])) or {}).get(key))
        out.append(row)
    return out


def add_few_label_figures(spec: StudySpec, results: dict[str, Any]) -> None:
    """Add the few-label keys (``knn_top1_l600``, ...) to :func:`~hpm.study.collect.collect`'s results,
    and ``few_labels`` (settings, per-seed differences) and ``budget_curve`` at the top."""
    ev = spec.eval
    if ev.labels:
        _run_figures(spec, results["runs"])
        _variant_figures(spec, results)
        _floor_figures(spec, results["floors"])
        results["few_labels"] = {
            "labels": ev.labels, "protocols": [p for p in PROTOCOL_ORDER if p in ev.labels_protocols],
            "recipe": ev.labels_recipe, "recipe_overrides": ev.labels_finetune_overrides,
            "test_subset": ev.labels_test_subset, "label_seed": ev.seed, "floor_seeds": ev.labels_floor_seeds,
            "differences": label_differences(spec, results),
        }
    if spec.budget_curve is not None:
        results["budget_curve"] = budget_rows(spec)
