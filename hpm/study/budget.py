"""The budget curve (``budget_curve``): one run's few-label figures after several epochs of its
pre-training, so that a reader sees what a gain costs.

The run keeps the checkpoints of those epochs (``train.keep_epochs``, set by
:func:`~hpm.study.spec.variant_config`); each is evaluated with ``budget_curve.labels`` labelled
images under ``budget_curve.protocols``, exactly as the run's own few-label evaluation (the
final epoch is the run's own result, shared with it). Results are files in the run's ``eval/``;
points whose files are gone are kept from the last report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.engine.checkpoint import CKPT_DIR
from hpm.engine.logger import LOG
from hpm.study.archive import previous_report
from hpm.study.few_labels import PROTOCOL_ORDER, evaluate, label_file, label_key, label_name, top1_of
from hpm.study.files import done_file, eval_file, read_json
from hpm.study.plan import Job
from hpm.study.spec import BudgetCurve, StudySpec, run_dir


def budget_job(spec: StudySpec, job: Job) -> bool:
    """Whether ``job`` is the run of the budget curve."""
    curve = spec.budget_curve
    return curve is not None and (curve.variant, curve.seed) == (job.variant.name, job.seed)


def _protocols(curve: BudgetCurve) -> list[str]:
    return [p for p in PROTOCOL_ORDER if p in curve.protocols]


def _point_file(spec: StudySpec, d: Path, protocol: str, epoch: int, final: int) -> Path:
    """Where a point's result lives: the run's own few-label file at the final epoch."""
    curve = spec.budget_curve
    assert curve is not None
    if epoch == final:
        return label_file(spec, d, protocol, curve.labels)
    return eval_file(d, f"budget_e{epoch}_{label_name(spec, protocol, curve.labels)}")


def _checkpoint_of(d: Path, epoch: int, done: dict[str, Any]) -> Path:
    steps_per_epoch = int(done["steps"]) // int(done["epochs"])
    return d / CKPT_DIR / f"step_{epoch * steps_per_epoch:08d}"


def eval_budget(spec: StudySpec, job: Job) -> None:
    """Evaluate the budget curve's checkpoints of a finished run (missing ones are skipped, said)."""
    curve = spec.budget_curve
    done = read_json(done_file(job.run_dir))
    if curve is None or done is None:
        return
    final = int(done["epochs"])
    for epoch in sorted(curve.epochs):
        source = job.run_dir if epoch == final else _checkpoint_of(job.run_dir, epoch, done)
        if not source.is_dir():
            LOG.warning("study %s: budget curve: %s has no checkpoint of epoch %d (trained without "
                        "train.keep_epochs?); that point is left out", spec.name, job.run_dir, epoch)
            continue
        for protocol in _protocols(curve):
            out = _point_file(spec, job.run_dir, protocol, epoch, final)
            evaluate(spec, protocol, curve.labels, source, out, job.seed,
                     f"budget curve, {job.variant.name} / seed {job.seed} after {epoch} epoch(s)")


def budget_rows(spec: StudySpec) -> list[dict[str, Any]]:
    """One row per epoch of the curve: the figures, the pre-training images and time to get there."""
    curve = spec.budget_curve
    if curve is None:
        return []
    d = run_dir(spec, curve.variant, curve.seed)
    done = read_json(done_file(d))
    kept = {r["epochs"]: r for r in previous_report(spec).get("budget_curve", [])
            if (r.get("variant"), r.get("seed"), r.get("labels")) == (curve.variant, curve.seed, curve.labels)}
    rows = []
    for epoch in sorted(curve.epochs):
        if done is None:
            if epoch in kept:
                rows.append({**kept[epoch], "archived": True})
            continue
        final = int(done["epochs"])
        row: dict[str, Any] = {"variant": curve.variant, "seed": curve.seed, "labels": curve.labels, "epochs": epoch,
                               "pretrain_steps": int(done["steps"]) // final * epoch,
                               # training time to this epoch at the run's pace (its wall time share)
                               "pretrain_time_s": float(done["train_time_s"]) * epoch / final}
        for protocol in _protocols(curve):
            key = label_key(protocol, curve.labels)
            value = top1_of(spec, _point_file(spec, d, protocol, epoch, final), protocol)
            row[key] = value if value is not None else (kept.get(epoch) or {}).get(key)
        row["archived"] = False
        rows.append(row)
    return rows
