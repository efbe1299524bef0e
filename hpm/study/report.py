"""The study's report: ``results.json``, the Markdown tables of ``results.md`` and ``curves.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpm.io import atomic_write_text
from hpm.engine.logger import LOG
from hpm.study.cells import fmt, signed
from hpm.study.collect import collect
from hpm.study.task_report import task_sections
from hpm.study.few_labels_report import few_label_sections
from hpm.study.files import write_json
from hpm.study.spec import StudySpec, run_dir


def format_report(results: dict[str, Any]) -> str:
    """The Markdown tables of :func:`collect`'s results."""
    classify = results.get("classification", True)
    lines = _variants_table(results) + (_floors_table(results) if classify else []) + few_label_sections(results)
    lines += task_sections(results)
    lines += _ranking_table(results) + _attention_table(results)
    lines += _differences_table(results) + _runs_table(results)
    ref = results.get("reference") or {}
    if ref:
        lines += ["", "Reference figures (not produced by this runner):", "", "```yaml",
                  yaml.safe_dump(ref, sort_keys=False).strip(), "```"]
    return "\n".join(lines) + "\n"


def _variants_table(results: dict[str, Any]) -> list[str]:
    k = results["knn_k"]
    classify = results.get("classification", True)
    figures = (f"k-NN@{k} and linear-probe top-1 (%) on the same test images for every run; " if classify
               else "No classification figures (the pre-training data have no image labels); ")
    lines = [f"# Study `{results['study']}`", "", results["description"].strip(), "",
             f"Mean ± sample std over seeds (n = seeds finished). {figures}`pred_spearman`: the student's predictor "
             "on its own masked batches (training log, mean of the last 5 logs); teacher ranking: the EMA teacher's "
             "prediction as the run configures it (`mask.teacher_view`: full image or random partial views) vs the "
             "real loss averaged over random masks (test images); time: training "
             "minutes at the run's median images/s (the per-run table also gives the measured wall time, which "
             "other work on the machine inflates); threads: the CPU threads each run had (images/s and times "
             "compare only between rows with the same threads).", "",
             "| variant | seeds | epochs | " + (f"k-NN@{k} | linear | fine-tune | " if classify else "")
             + "pred_spearman | teacher ranking ρ | teacher top-25% | img/s | time (min) | threads |",
             "|---|---|---|" + "---|" * (9 if classify else 6)]
    for row in results["variants"]:
        if not row["seeds_done"]:
            lines.append(f"| {row['variant']} | 0/{row['seeds_planned']} | – | not run yet |" + " |" * (8 if classify else 5))
            continue
        minutes = dict(row["est_time_s"])
        minutes = {**minutes, "mean": minutes["mean"] / 60 if minutes["mean"] is not None else None,
                   "std": minutes["std"] / 60 if minutes["std"] is not None else None}
        top1 = f"{fmt(row['knn_top1'])} | {fmt(row['linear_top1'])} | {fmt(row['finetune_top1'])} | " if classify else ""
        lines.append(
            f"| {row['variant']} | {row['seeds_done']}/{row['seeds_planned']} | {','.join(map(str, row['epochs']))} | "
            f"{top1}{fmt(row['pred_spearman'], 3)} | {fmt(row['teacher_rank_spearman'], 3)} | "
            f"{fmt(row['teacher_rank_top25'], 3)} | {fmt(row['img_per_s'], 0)} | {fmt(minutes, 1)} | "
            f"{','.join(map(str, row['threads'])) or '–'} |"
        )
    return lines


def _floors_table(results: dict[str, Any]) -> list[str]:
    k = results["knn_k"]
    recipe = results.get("finetune_recipe", "small")
    lines = ["", f"Fine-tune: the `{recipe}` recipe of `hpm eval finetune` (recipe seed = pre-training seed).", "",
             "Floors (no pre-training, same evaluation; the random-init fine-tune: one random encoder per seed):", "",
             f"| features | k-NN@{k} | linear | fine-tune |", "|---|---|---|---|"]
    for kind, row in results["floors"].items():
        lines.append(f"| {kind.replace('_', ' ')} | {fmt(row['knn_top1'])} | {fmt(row['linear_top1'])} | "
                     f"{fmt(row.get('finetune_top1'))} |")
    return lines


def _ranking_table(results: dict[str, Any]) -> list[str]:
    ranked = [row for row in results["variants"] if row["seeds_done"] and row["student_rank_spearman"]["mean"] is not None]
    if not ranked:
        return []
    lines = ["", "How well the loss predictor ranks the real per-patch loss (test images; Spearman ρ, mean over "
             "images; top-25%: share of the truly hardest quarter of the patches also in the predictor's top "
             "quarter, chance 0.25). Teacher as used: its scores as the run computes them to choose masks "
             "(view `full`: the whole image; `masked`: random partial views scored at their hidden patches, "
             "ρ over the patches the views hid, top quarter taken among them, which are the patches a mask can "
             "take as hard). Teacher, full view: the whole-image pass whatever the run uses. Student, masked "
             "view: its scores of the masked patches of a random mask against their loss under that mask "
             "(where the predictor is trained). Teacher, masked views: scores from 10 random partial views, "
             "z-normalised per view, averaged per patch (a diagnostic). Retest: the real loss from other "
             "random masks against itself (the ceiling).", "",
             "| variant | teacher view | teacher as used ρ | as used top-25% | teacher, full view ρ | full view "
             "top-25% | student, masked view ρ | student, full view ρ | teacher, masked views ρ | masked views "
             "top-25% | retest ρ |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in ranked:
        views = sorted({r.get("teacher_view") or "–" for r in results["runs"] if r["variant"] == row["variant"]})
        lines.append(f"| {row['variant']} | {','.join(views)} | {fmt(row['teacher_rank_spearman'], 3)} | "
                     f"{fmt(row['teacher_rank_top25'], 3)} | {fmt(row.get('teacher_full_rank_spearman'), 3)} | "
                     f"{fmt(row.get('teacher_full_rank_top25'), 3)} | {fmt(row['student_masked_spearman'], 3)} | "
                     f"{fmt(row['student_rank_spearman'], 3)} | {fmt(row['teacher_masked_avg_spearman'], 3)} | "
                     f"{fmt(row['teacher_masked_avg_top25'], 3)} | {fmt(row['real_retest_spearman'], 3)} |")
    return lines


def _attention_table(results: dict[str, Any]) -> list[str]:
    """Which teacher score ranks the real loss better: its [CLS] attention or its predicted loss."""
    rows = [row for row in results["variants"]
            if row["seeds_done"] and (row.get("teacher_attention_rank_spearman") or {}).get("mean") is not None]
    if not rows:
        return []
    lines = ["", "The teacher's [CLS] attention (last block, mean over heads, whole image: AttMask's score) against "
             "its predicted loss as rankings of the real per-patch loss (test images, as above). Mask chosen by: "
             "the score the run's masks used.", "",
             "| variant | mask chosen by | teacher view | attention ρ | attention top-25% | predicted loss, full view ρ "
             "| predicted loss top-25% | scores as used ρ | as used top-25% |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        mine = [r for r in results["runs"] if r["variant"] == row["variant"]]
        chosen = sorted({r.get("mask_score") or "–" for r in mine})
        views = sorted({r.get("teacher_view") or "–" for r in mine})
        cells = [row[key] for key in ("teacher_attention_rank_spearman", "teacher_attention_rank_top25",
                                      "teacher_full_rank_spearman", "teacher_full_rank_top25",
                                      "teacher_rank_spearman", "teacher_rank_top25")]
        lines.append(f"| {row['variant']} | {','.join(chosen)} | {','.join(views)} | "
                     + " | ".join(fmt(cell, 3) for cell in cells) + " |")
    return lines


def _differences_table(results: dict[str, Any]) -> list[str]:
    diffs = [d for d in results.get("differences", []) if any(v is not None for k, v in d.items() if "_minus_" in k)]
    if not diffs:
        return []
    refs = sorted({k.split("_minus_", 1)[1] for d in diffs for k in d if k.startswith("knn_top1_minus_")},
                  key=lambda r: (results.get("compare_to") or []).index(r) if r in (results.get("compare_to") or []) else 0)
    with_ft = any(d.get(f"finetune_top1_minus_{r}") is not None for d in diffs for r in refs)
    with_gain = any(d.get("finetune_top1_minus_random_init") is not None for d in diffs)
    heads = [f"k-NN − {r} | linear − {r}" + (f" | fine-tune − {r}" if with_ft else "") for r in refs]
    heads += ["fine-tune − random init"] if with_gain else []
    lines = ["", "Per-seed differences (top-1 points; the variant minus the same seed's run of the reference):", "",
             "| variant | seed | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * (len(refs) * (3 if with_ft else 2) + with_gain)]
    for d in diffs:
        cells = [f"{signed(d.get(f'knn_top1_minus_{r}'))} | {signed(d.get(f'linear_top1_minus_{r}'))}"
                 + (f" | {signed(d.get(f'finetune_top1_minus_{r}'))}" if with_ft else "") for r in refs]
        cells += [signed(d.get("finetune_top1_minus_random_init"))] if with_gain else []
        lines.append(f"| {d['variant']} | {d['seed']} | " + " | ".join(cells) + " |")
    return lines


def _runs_table(results: dict[str, Any]) -> list[str]:
    k = results["knn_k"]
    classify = results.get("classification", True)
    lines = ["", "Per run:", "", "| variant | seed | precision | epochs | "
             + (f"k-NN@{k} | linear | fine-tune | " if classify else "")
             + "pred_spearman | teacher ranking ρ | img/s | time (min) | wall (min) | threads |",
             "|---|---|---|---|" + "---|" * (9 if classify else 6)]
    for r in results["runs"]:
        top1 = f"{fmt(r['knn_top1'])} | {fmt(r['linear_top1'])} | {fmt(r['finetune_top1'])} | " if classify else ""
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['precision']} | {r['epochs']} | {top1}"
            f"{fmt(r['pred_spearman'], 3)} | "
            f"{fmt(r['teacher_rank_spearman'], 3)} | {fmt(r['img_per_s'], 0)} | {fmt(r['est_time_s'] / 60, 1)} | "
            f"{fmt(r['train_time_s'] / 60, 1)} | {r['threads'] if r['threads'] is not None else '–'} |"
        )
    return lines


def write_report(spec: StudySpec) -> Path:
    """Write ``results.json``, ``results.md`` and (with finished runs) ``curves.png``, from the
    study file less any work-selecting overrides (``spec.report_spec``)."""
    spec = spec.report_spec
    out = Path(spec.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = collect(spec)
    write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_report(results))
    present = [r for r in results["runs"] if not r.get("archived")]
    dirs = [run_dir(spec, r["variant"], r["seed"]) for r in present if r["seed"] == min(
        x["seed"] for x in present if x["variant"] == r["variant"])]
    # with runs kept from an earlier report (no training curves here), curves.png of that report
    # stays and the runs present get their own figure
    curves = "curves_new_runs.png" if len(present) < len(results["runs"]) else "curves.png"
    if dirs:
        try:
            from hpm.viz.plot import plot_runs

            plot_runs(dirs, out / curves, names=[f"{d.parent.name} (seed {d.name[5:]})" for d in dirs])
        except Exception as exc:  # noqa: BLE001 - a figure must not stop hours of training
            LOG.warning("curves.png not written: %s", exc)
    return out
