"""The report's task tables: segmentation, detection or other task figures per encoder, and per-seed differences."""

from __future__ import annotations

from typing import Any

from hpm.study.cells import counted, fmt, signed


def task_sections(results: dict[str, Any]) -> list[str]:
    """The Markdown lines of the task results (none for a study without them)."""
    if not results.get("tasks"):
        return []
    return _figures_table(results) + _objectness_table(results) + _differences_table(results)


def _objectness_table(results: dict[str, Any]) -> list[str]:
    """Whether the teacher's predicted loss, and the real loss, are higher on object patches."""
    rows = [r for r in results["variants"] if r.get("seeds_done") and (r.get("real_object_auc") or {}).get("n")]
    if not rows:
        return []
    lines = ["", "Does the teacher find the objects? Per validation scene, the share of (object patch, background "
             "patch) pairs in which the object patch scores higher (AUC, chance 0.5; an object patch is at least "
             "half covered by items), mean over the scenes: the teacher's predicted loss (partial views, as it "
             "scores to choose masks) and the real reconstruction loss (random masks).", "",
             "| variant | seeds | teacher's predicted loss AUC | real loss AUC |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['seeds_done']} | {fmt(row.get('teacher_object_auc'), 3)} | "
                     f"{fmt(row.get('real_object_auc'), 3)} |")
    return lines


def _columns(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(key, d) for d in results["tasks"]["evaluations"] for key in d["figures"]]


def _describe(d: dict[str, Any]) -> str:
    labels = "all labelled images" if d["labels"] is None else f"{d['labels']} labelled images"
    overrides = ", ".join(f"{k}={v}" for k, v in d["overrides"].items())
    recipe = d["recipe"] or ("small" if d["task"] in ("segment", "detect") else "default")
    text = f"`{d['name']}`: `hpm eval {d['task']}`" + (f", recipe `{recipe}`" if d["task"] not in ("knn", "linear") else "")
    text += f" ({overrides})" if overrides else ""
    text += f", label `{d['label']}`" if d.get("label") else ""
    return text + f", {labels}, on `{d['data_dir'] or 'the run’s data'}`"


def _figures_table(results: dict[str, Any]) -> list[str]:
    tasks = results["tasks"]
    columns = _columns(results)
    lines = ["", "Task evaluations (recipe seed = pre-training seed; the labelled images chosen by seed "
             f"{tasks['label_seed']}: the same for every row; floor: random-init encoders of init seeds "
             f"{', '.join(map(str, tasks['floor_seeds']))}). Segmentation: mIoU (%) over the classes present, "
             "single scale; detection: COCO AP (%) at IoU 0.50:0.95; k-NN, probe, fine-tune: top-1 (%). "
             "Mean ± sample std over seeds.", "",
             *[f"- {_describe(d)}" for d in tasks["evaluations"]], "",
             "| encoder | seeds | " + " | ".join(f"`{key}`" for key, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in results["variants"]:
        if row.get("seeds_done"):
            cells = [counted(row.get(key), row["seeds_done"]) for key, _ in columns]
            lines.append(f"| {row['variant']} | {row['seeds_done']}/{row['seeds_planned']} | " + " | ".join(cells) + " |")
    floor = results["floors"].get("random_init") or {}
    n = max((floor.get(key) or {}).get("n", 0) for key, _ in columns)
    lines.append(f"| random init | {n}/{len(tasks['floor_seeds'])} | "
                 + " | ".join(counted(floor.get(key), n) for key, _ in columns) + " |")
    return lines


def _differences_table(results: dict[str, Any]) -> list[str]:
    """Per run: each figure minus the random-init floor of its seed, and minus each reference's run."""
    diffs = results["tasks"]["differences"]
    keys = [k for k in dict.fromkeys(k for d in diffs for k in d if "_minus_" in k)
            if any(d.get(k) is not None for d in diffs)]
    if not keys:
        return []
    lines = ["", "Per-seed differences of the task evaluations (points; the run minus the random-init encoder of the same seed, or "
             "minus the reference variant's run of the same seed):", "",
             "| variant | seed | " + " | ".join(k.replace("_minus_", " − ") for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for d in diffs:
        lines.append(f"| {d['variant']} | {d['seed']} | " + " | ".join(signed(d.get(k)) for k in keys) + " |")
    return lines

