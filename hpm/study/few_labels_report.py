"""The report's few-label tables: figures per label count, per-seed differences, the budget curve."""

from __future__ import annotations

from typing import Any

from hpm.study.cells import counted, fmt, signed

NAMES = {"knn": "k-NN", "linear": "linear", "finetune": "fine-tune"}


def few_label_sections(results: dict[str, Any]) -> list[str]:
    """The Markdown lines of the few-label results (none for a study without them)."""
    lines = _figures_table(results) if results.get("few_labels") else []
    lines += _differences_tables(results) if results.get("few_labels") else []
    return lines + _budget_table(results)


def _columns(results: dict[str, Any]) -> list[tuple[str, str, int]]:
    few = results["few_labels"]
    return [(f"{p}_top1_l{n}", p, n) for n in few["labels"] for p in few["protocols"]]


def _figures_table(results: dict[str, Any]) -> list[str]:
    few, k = results["few_labels"], results["knn_k"]
    test = "the whole test split" if few["test_subset"] is None else f"{few['test_subset']} test images"
    columns = _columns(results)
    heads = [f"{_head(key, k)} ({n} labels)" for key, _, n in columns]
    lines = ["", f"Few labels: only {' or '.join(map(str, few['labels']))} training images keep their label "
             f"(class-balanced, the smaller set inside the larger, chosen by seed {few['label_seed']} from the whole "
             f"train split: the same images for every row), evaluated on {test}. Fine-tune: the "
             f"`{few['recipe']}` recipe (recipe seed = pre-training seed). Floors on the same labels: random-init "
             f"encoders (init seeds {', '.join(map(str, few['floor_seeds']))}) and raw pixels. Top-1 (%), mean ± "
             "sample std over seeds.", "",
             "| encoder | seeds | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(columns)]
    for row in results["variants"]:
        if row.get("seeds_done"):
            cells = [counted(row.get(key), row["seeds_done"]) for key, _, _ in columns]
            lines.append(f"| {row['variant']} | {row['seeds_done']}/{row['seeds_planned']} | " + " | ".join(cells) + " |")
    for kind in ("random_init", "raw_pixels"):
        floor = results["floors"].get(kind) or {}
        n = max((floor.get(key) or {}).get("n", 0) for key, _, _ in columns)
        cells = [counted(floor.get(key), n) for key, _, _ in columns]
        lines.append(f"| {kind.replace('_', ' ')} | {n} | " + " | ".join(cells) + " |")
    return lines


def _differences_tables(results: dict[str, Any]) -> list[str]:
    """One table per label count: the run minus random init (same seed), raw pixels, the references."""
    diffs = results["few_labels"]["differences"]
    lines: list[str] = []
    for n in results["few_labels"]["labels"]:
        keys = [k for k in dict.fromkeys(k for d in diffs for k in d if f"_l{n}_minus_" in k)
                if any(d.get(k) is not None for d in diffs)]
        rows = [d for d in diffs if any(d.get(k) is not None for k in keys)]
        if not rows:
            continue
        heads = [f"{NAMES[k.split('_top1_')[0]]} − {k.split('_minus_', 1)[1].replace('_', ' ')}" for k in keys]
        lines += ["", f"Per-seed differences at {n} labels (top-1 points; the run minus the random-init encoder of "
                  "the same seed, raw pixels, and the same seed's run of the reference):", "",
                  "| variant | seed | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(keys)]
        for d in rows:
            lines.append(f"| {d['variant']} | {d['seed']} | " + " | ".join(signed(d.get(k)) for k in keys) + " |")
    return lines


def _head(key: str, k: int) -> str:
    protocol = key.split("_top1_")[0]
    return NAMES[protocol] + (f"@{k}" if protocol == "knn" else "")


def _budget_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("budget_curve") or []
    if not rows:
        return []
    first = rows[0]
    keys = [k for k in first if "_top1_l" in k]
    floor = results["floors"].get("random_init") or {}
    lines = ["", f"Budget curve: `{first['variant']}` seed {first['seed']} after each number of pre-training epochs "
             f"(its checkpoints), {first['labels']} labels; time: the run's training minutes up to that epoch "
             "(its share of the measured wall time); epoch 0: the random-init encoder of the same seed.", "",
             "| epochs | steps | time (min) | " + " | ".join(_head(k, results["knn_k"]) for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    random_init = [fmt(((floor.get(k) or {}).get("per_seed") or {}).get(str(first["seed"]))) for k in keys]
    if any(c != "–" for c in random_init):
        lines.append("| 0 (random init) | 0 | 0 | " + " | ".join(random_init) + " |")
    for r in rows:
        lines.append(f"| {r['epochs']} | {r.get('pretrain_steps', '–')} | {fmt(r.get('pretrain_time_s', 0) / 60, 1)} | "
                     + " | ".join(fmt(r.get(k)) for k in keys) + " |")
    return lines
