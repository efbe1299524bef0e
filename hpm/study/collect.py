"""Every finished figure of a study, per run and per variant, and per-seed differences."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from hpm.engine.logger import read_metrics
from hpm.study.archive import archived_floors, archived_runs, kept_floor_finetunes
from hpm.study.task_collect import add_task_figures
from hpm.study.few_labels_collect import add_few_label_figures
from hpm.study.files import done_file, eval_file, finetune_file, floor_dir, floor_finetune_file, read_json, result
from hpm.study.plan import Job, plan
from hpm.study.spec import StudySpec


def images_per_step(d: Path) -> int:
    """Images per optimizer step of a run (batch size x accumulation steps, from its config)."""
    train = (yaml.safe_load((d / "config.yaml").read_text()) or {})["train"]
    return int(train["batch_size"]) * int(train.get("accum_steps", 1))


def _last_mean(records: list[dict[str, Any]], key: str, n: int = 5) -> float | None:
    values = [r[key] for r in records if key in r and r[key] is not None]
    return statistics.fmean(values[-n:]) if values else None


# figures of a run that the variant rows aggregate (mean, std and n over seeds)
VARIANT_METRICS = ["knn_top1", "linear_top1", "finetune_top1", "pred_spearman", "teacher_spearman_train",
                   "teacher_top25_train", "teacher_rank_spearman", "teacher_rank_top25", "teacher_full_rank_spearman",
                   "teacher_full_rank_top25", "student_rank_spearman", "student_masked_spearman",
                   "real_retest_spearman", "teacher_masked_avg_spearman", "teacher_masked_avg_top25",
                   "final_loss_rec", "img_per_s", "train_time_s", "est_time_s"]
# the teacher's [CLS] attention (AttMask's score) against the real loss: in a variant row only when
# some run of the study has it (a study without attention figures keeps the keys it had)
ATTENTION_METRICS = ["teacher_attention_rank_spearman", "teacher_attention_rank_top25"]


def collect(spec: StudySpec) -> dict[str, Any]:
    """Every finished figure of the study, per run and per variant (mean, std over seeds)."""
    runs = []
    archived = archived_runs(spec)
    for job in plan(spec):
        done = read_json(done_file(job.run_dir))
        if done is None:
            if (job.variant.name, job.seed) in archived:
                runs.append(archived[(job.variant.name, job.seed)])
            continue
        runs.append(run_row(spec, job, done))
    floors = floor_rows(spec)
    results = {"study": spec.name, "description": spec.description, "knn_k": spec.eval.knn_k,
               "variants": variant_rows(spec, runs), "runs": runs, "floors": floors, "reference": spec.reference,
               "finetune_recipe": spec.eval.finetune_recipe, "compare_to": spec.compare_to,
               "differences": seed_differences(runs, spec.compare_to, floors["random_init"].get("finetune_top1"))}
    add_few_label_figures(spec, results)  # only with eval.labels / budget_curve (hpm/study/few_labels_collect.py)
    add_task_figures(spec, results)  # only with eval.tasks (hpm/study/task_collect.py)
    if not spec.eval.classification:
        results["classification"] = False  # no k-NN, probe or classification fine-tune: the report leaves them out
    return results


def run_row(spec: StudySpec, job: Job, done: dict[str, Any]) -> dict[str, Any]:
    """The figures of one finished run (``done``: its ``study_pretrain.json``)."""
    k = str(spec.eval.knn_k)
    records = read_metrics(job.run_dir / "metrics.jsonl")
    rank = read_json(eval_file(job.run_dir, "ranking")) or {}
    attention = rank.get("mask_strategy") == "attention"
    return {
        "variant": job.variant.name,
        "seed": job.seed,
        "epochs": done["epochs"],
        "precision": done["precision"],
        "knn_top1": result(eval_file(job.run_dir, "knn"), "top1", k),
        "linear_top1": result(eval_file(job.run_dir, "linear"), "top1"),
        "finetune_top1": result(finetune_file(job.run_dir, spec.eval.finetune_recipe), "top1"),
        "pred_spearman": _last_mean(records, "pred_spearman"),
        "teacher_spearman_train": _last_mean(records, "teacher_spearman"),
        "teacher_top25_train": _last_mean(records, "teacher_top25"),
        # the teacher as configured (mask.teacher_view) and, for comparison, its full-image pass
        "teacher_view": rank.get("teacher_view", "full" if "teacher_spearman" in rank else None),
        "teacher_rank_spearman": rank.get("teacher_spearman"),
        "teacher_rank_top25": rank.get("teacher_top25"),
        # the predicted loss of the full image (reports before version 3 kept it as teacher_*; an
        # attention run's teacher_* is its attention)
        "teacher_full_rank_spearman": rank.get("teacher_full_spearman", None if attention else rank.get("teacher_spearman")),
        "teacher_full_rank_top25": rank.get("teacher_full_top25", None if attention else rank.get("teacher_top25")),
        "student_rank_spearman": rank.get("student_spearman"),
        "student_masked_spearman": rank.get("student_masked_spearman"),
        "real_retest_spearman": rank.get("real_retest_spearman"),
        "teacher_masked_avg_spearman": rank.get("teacher_masked_avg_spearman"),
        "teacher_masked_avg_top25": rank.get("teacher_masked_avg_top25"),
        **({"mask_score": "attention" if attention else "predicted loss",
            "teacher_attention_rank_spearman": rank["teacher_attention_spearman"],
            "teacher_attention_rank_top25": rank.get("teacher_attention_top25")}
           if "teacher_attention_spearman" in rank else {}),
        "final_loss_rec": _last_mean(records, "loss_rec"),
        "img_per_s": done["img_per_s"],
        "threads": done.get("threads"),
        "train_time_s": done["train_time_s"],
        # the time at the run's median speed: what a quiet machine takes (bursts of other
        # work on a shared machine inflate the wall time, not the median)
        "est_time_s": done["steps"] * images_per_step(job.run_dir) / done["img_per_s"],
        "archived": False,  # True: figures kept from an earlier report, run directory gone
    }


def aggregate(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (None below two values) and n of the figures that exist."""
    return {"mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}


def variant_rows(spec: StudySpec, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: seeds done and planned, and each of :data:`VARIANT_METRICS` over its seeds."""
    variants = []
    for v in spec.variants:
        mine = [r for r in runs if r["variant"] == v.name]
        if not mine:
            variants.append({"variant": v.name, "seeds_done": 0, "seeds_planned": len(v.seeds)})
            continue
        row: dict[str, Any] = {"variant": v.name, "seeds_done": len(mine), "seeds_planned": len(v.seeds),
                               "epochs": sorted({r["epochs"] for r in mine}), "description": v.description,
                               "threads": sorted({r["threads"] for r in mine if r["threads"] is not None})}
        extra = [m for m in ATTENTION_METRICS if any(m in r for r in runs)]
        for m in VARIANT_METRICS + extra:
            row[m] = aggregate([r[m] for r in mine if r.get(m) is not None])
        variants.append(row)
    return variants


def floor_rows(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """The floors' figures (random init, raw pixels), from their files or else the last report."""
    k = str(spec.eval.knn_k)
    floors = {}
    floors_at = floor_dir(spec)
    kept = archived_floors(spec)
    for kind in ("random_init", "raw_pixels"):
        floors[kind] = {"knn_top1": result(floors_at / f"{kind}_knn.json", "top1", k),
                        "linear_top1": result(floors_at / f"{kind}_linear.json", "top1")}
        for key, value in floors[kind].items():
            if value is None:
                floors[kind][key] = (kept.get(kind) or {}).get(key)
    kept_tuned = kept_floor_finetunes(spec)
    tuned = {s: result(floor_finetune_file(spec, s), "top1") for s in spec.eval.floor_finetune_seeds}
    tuned = {s: kept_tuned.get(s) if v is None else v for s, v in tuned.items()}
    values = [v for v in tuned.values() if v is not None]
    floors["random_init"]["finetune_top1"] = {
        **aggregate(values), "recipe": spec.eval.finetune_recipe, "per_seed": {str(s): v for s, v in tuned.items()},
    } if spec.eval.floor_finetune_seeds else (kept.get("random_init") or {}).get("finetune_top1")
    floors["raw_pixels"]["finetune_top1"] = None
    return floors


DIFFERENCE_METRICS = ("knn_top1", "linear_top1", "finetune_top1")


def seed_differences(
    runs: list[dict[str, Any]], against: list[str], random_finetune: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Per seed, each variant's k-NN, linear and fine-tune top-1 minus those of each ``against``
    variant's run of the same seed (None where either is missing), and its fine-tune minus the
    random-init fine-tune of the same seed (``finetune_top1_minus_random_init``)."""
    by_key = {(r["variant"], r["seed"]): r for r in runs}
    per_seed = (random_finetune or {}).get("per_seed") or {}
    out = []
    for r in runs:
        random_ft = per_seed.get(str(r["seed"]))
        gain = None if r.get("finetune_top1") is None or random_ft is None else r["finetune_top1"] - random_ft
        if r["variant"] in against:
            if gain is not None:
                out.append({"variant": r["variant"], "seed": r["seed"], "finetune_top1_minus_random_init": gain})
            continue
        row: dict[str, Any] = {"variant": r["variant"], "seed": r["seed"], "finetune_top1_minus_random_init": gain}
        for ref in against:
            other = by_key.get((ref, r["seed"]))
            for m in DIFFERENCE_METRICS:
                a, b = r.get(m), (other or {}).get(m)
                row[f"{m}_minus_{ref}"] = None if a is None or b is None else a - b
        out.append(row)
    return out
