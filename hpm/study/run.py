"""``run_study``: pre-train, evaluate and report every planned run, continuing where it stopped."""

from __future__ import annotations

from pathlib import Path

import yaml

from hpm.io import atomic_write_text
from hpm.engine.logger import LOG, setup_logging
from hpm.errors import ConfigError
from hpm.study.archive import archived_runs
from hpm.study.budget import budget_job, eval_budget
from hpm.study.tasks import eval_run_tasks, run_task_floors
from hpm.study.dense_picture import PICTURE, draw_dense_picture
from hpm.study.det_picture import DET_PICTURE, draw_detection_picture
from hpm.study.evaluate import eval_run
from hpm.study.few_labels import PIXEL_PROTOCOLS, eval_run_labels, run_label_floors
from hpm.study.files import done_file
from hpm.study.floors import run_floor_finetunes, run_floors
from hpm.study.plan import Job, plan
from hpm.study.pretrain import matched_epochs, pretrain
from hpm.study.report import write_report
from hpm.study.spec import StudySpec, check_task_data


def run_study(spec: StudySpec, only: list[str] | None = None, max_jobs: int | None = None) -> Path:
    """Run (or continue) the study; returns the report directory.

    Args:
        spec: The study.
        only: Run only these variants (the report still covers everything finished); ``floors``
            names the random-init fine-tunes (``eval.floor_finetune_seeds``, those at the
            few-label counts of ``eval.labels`` and those of ``eval.tasks``), which
            otherwise run after every variant's runs.
        max_jobs: Stop after this many pre-training runs were started in this call.
    """
    setup_logging(True)
    if only:
        unknown = sorted(set(only) - {v.name for v in spec.variants} - {"floors"})
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; the study has {[v.name for v in spec.variants]}")
    _start(spec)
    started = 0
    deferred: list[Job] = []
    archived = archived_runs(spec)
    for job in plan(spec):
        if only and job.variant.name not in only:
            continue
        if (job.variant.name, job.seed) in archived:
            LOG.info("study %s: %s / seed %d is kept from the report (its run directory is gone; delete its "
                     "entry from results.json to retrain it)", spec.name, job.variant.name, job.seed)
            continue
        epochs = None
        if job.variant.match_time_of is not None:
            epochs = matched_epochs(spec, job)
            if epochs is None:
                deferred.append(job)
                continue
        if not done_file(job.run_dir).is_file():
            if job.variant.reuse is not None:
                LOG.warning("study %s: %s / seed %d reuses %s, which has not finished; run it in its own study",
                            spec.name, job.variant.name, job.seed, job.run_dir)
                continue
            if max_jobs is not None and started >= max_jobs:
                continue  # start no more runs; finished ones further on are still evaluated
            started += 1
            LOG.info("study %s: pre-training %s / seed %d -> %s", spec.name, job.variant.name, job.seed, job.run_dir)
            pretrain(spec, job, epochs)
        eval_run(spec, job)
        eval_run_labels(spec, job)
        eval_run_tasks(spec, job, after_each=lambda: write_report(spec))
        if budget_job(spec, job):
            eval_budget(spec, job)
        write_report(spec)
    if spec.floors and (not only or "floors" in only):
        _floor_finetunes(spec)
    for job in deferred:
        LOG.warning("study %s: %s / seed %d waits for runs of %s and %s of the same seed",
                    spec.name, job.variant.name, job.seed, job.variant.match_time_of, job.variant.time_reference)
    return finish_report(spec)


def _floor_finetunes(spec: StudySpec) -> None:
    """The random-init fine-tunes: the study's recipe, the few-label counts, the task evaluations."""
    if spec.eval.floor_finetune_seeds:
        run_floor_finetunes(spec)
    run_label_floors(spec, ("finetune",), after_each=lambda: write_report(spec))
    run_task_floors(spec, after_each=lambda: write_report(spec))


def _start(spec: StudySpec) -> None:
    """The runs' folder with the study file as run, and the floors that take seconds (after
    checking the tasks' data folders exist)."""
    check_task_data(spec)
    Path(spec.runs_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(spec.runs_dir) / "study.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    if spec.floors:
        run_floors(spec)
        run_label_floors(spec, PIXEL_PROTOCOLS)  # k-NN and probe: seconds each
        write_report(spec)


def finish_report(spec: StudySpec) -> Path:
    """The report, and the dense study's pictures; returns the report's folder."""
    out = write_report(spec)
    if any(t.task == "segment" for t in spec.eval.tasks):
        draw_dense_picture(spec.report_spec, out / PICTURE)
    if any(t.task == "detect" for t in spec.eval.tasks):
        draw_detection_picture(spec.report_spec, out / DET_PICTURE)
    return out
