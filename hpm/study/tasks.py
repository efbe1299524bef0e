"""A study's task evaluations (``eval.tasks``): every run, and random-init floors, evaluated by
segmentation (``hpm eval segment``), detection (``hpm eval detect``), or k-NN, probe or fine-tune
with settings of their own (a video run's label kind and test views).

Each evaluation of a run is one result file, ``RUN/eval/study_<name>.json`` (a fine-tune's
checkpoints: the same path without ``.json``), run with the recipe seed = the pre-training seed
and the labelled images chosen by ``eval.seed`` (the same for every encoder). A floor is a
random-init encoder of the study's architecture, init seed = recipe seed = s
(``eval.task_floor_seeds``), on the same labelled images: ``FLOORS/random_init_<name>_seed_<s>.json``.
A re-run continues: a finished file is kept, an interrupted fine-tune resumes from its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpm.config import Config
from hpm.engine.logger import LOG
from hpm.study.files import eval_file, floor_dir, read_json, write_json
from hpm.study.objectness import VERSION as OBJECTNESS_VERSION
from hpm.study.objectness import objectness
from hpm.study.plan import Job
from hpm.study.spec import StudySpec, TaskEval, task_finetune_config, variant_config

DENSE = ("segment", "detect")


def selected(spec: StudySpec) -> list[TaskEval]:
    """The task evaluations this call runs (``eval.tasks_only``, else all)."""
    only = spec.eval.tasks_only
    return [t for t in spec.eval.tasks if only is None or t.name in only]


def task_file(run_dir: Path, task: TaskEval) -> Path:
    """A run's result of one task evaluation."""
    return eval_file(run_dir, task.name)


def floor_task_file(spec: StudySpec, task: TaskEval, seed: int) -> Path:
    """A random-init floor's result of one task evaluation."""
    return floor_dir(spec) / f"random_init_{task.name}_seed_{seed}.json"


def figure(path: Path, dotted: str) -> float | None:
    """The figure at ``dotted`` (e.g. ``box.AP``, ``top1.20``) of a result file's ``result``; None
    if missing. Detection's AP (a fraction) is given in percent, as mIoU and top-1 are."""
    data = read_json(path)
    if data is None:
        return None
    node: Any = data["result"]
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        return None
    return 100.0 * float(node) if data.get("protocol") == "detect" else float(node)


def _dense_options(spec: StudySpec, task: TaskEval, out: Path, recipe_seed: int, cfg: Config | None,
                   init_seed: int | None) -> Any:
    """The options of ``hpm eval segment`` / ``detect`` for one result."""
    common = dict(data_dir=task.data_dir, labels=task.labels, seed=spec.eval.seed, out=out,
                  precision=spec.eval.precision, random_init=cfg is not None, cfg=cfg, init_seed=init_seed)
    overrides = {**task.overrides, "seed": recipe_seed}
    if task.task == "segment":
        from hpm.eval.segment import SegmentOptions, build_segment_config

        return SegmentOptions(**common, recipe=build_segment_config(task.recipe or "small", overrides))
    from hpm.eval.detect import DetectOptions, build_detect_config

    return DetectOptions(**common, recipe=build_detect_config(task.recipe or "small", overrides))


def _eval_options(spec: StudySpec, task: TaskEval, out: Path, recipe_seed: int, cfg: Config | None,
                  init_seed: int | None) -> Any:
    """The options of ``hpm eval knn|linear|finetune`` for one result (video runs: the label kind,
    the test views and the video recipe)."""
    from hpm.eval.run import EvalOptions
    from hpm.eval.video import VideoOptions

    video = variant_config(spec, spec.variants[0], 0).model.num_frames is not None
    recipe = task_finetune_config(task, video, recipe_seed) if task.task == "finetune" else None
    opts = EvalOptions(random_init=cfg is not None, cfg=cfg, init_seed=init_seed, labels=task.labels,
                       train_subset=None if task.labels else task.train_subset, test_subset=task.test_subset,
                       seed=spec.eval.seed, pool=spec.eval.pool, precision=spec.eval.precision, out=out,
                       data_dir=task.data_dir)
    if video:
        opts.video = VideoOptions(label=task.label, test_clips=task.test_clips, finetune=recipe)
    elif recipe is not None:
        opts.finetune = recipe
    return opts


def evaluate(spec: StudySpec, task: TaskEval, source: Path | None, out: Path, recipe_seed: int, what: str,
             cfg: Config | None = None) -> bool:
    """One task result into ``out`` (``source`` None: a random-init encoder of ``cfg``, init
    seed = ``recipe_seed``); False (nothing done) if it is there already."""
    if out.is_file():
        return False
    LOG.info("study %s: %s: %s", spec.name, what, task.name)
    init_seed = recipe_seed if cfg is not None else None
    if task.task == "segment":
        from hpm.eval.segment import run_segment_eval

        run_segment_eval(source, _dense_options(spec, task, out, recipe_seed, cfg, init_seed))
    elif task.task == "detect":
        from hpm.eval.detect import run_detect_eval

        run_detect_eval(source, _dense_options(spec, task, out, recipe_seed, cfg, init_seed))
    else:
        from hpm.eval.run import run_eval
        from hpm.export import export_classifier

        run_eval(task.task, source, _eval_options(spec, task, out, recipe_seed, cfg, init_seed),  # type: ignore[arg-type]
                 export_classifier=export_classifier)
    return True


def _objectness(spec: StudySpec, job: Job) -> None:
    """Whether the run's teacher finds the objects of the segmentation data (:mod:`.objectness`)."""
    segment = next((t for t in spec.eval.tasks if t.task == "segment"), None)
    out = eval_file(job.run_dir, "objectness")
    if segment is not None and (read_json(out) or {}).get("version", 0) < OBJECTNESS_VERSION:
        LOG.info("study %s: %s / seed %d: objectness", spec.name, job.variant.name, job.seed)
        write_json(out, objectness(job.run_dir, Path(segment.data_dir or ""), spec.eval.ranking_images,
                                   spec.eval.ranking_masks, spec.eval.seed))


def eval_run_tasks(spec: StudySpec, job: Job, after_each: Callable[[], Any] | None = None) -> None:
    """The task results of one finished run (``after_each``: called after each one computed),
    after whether its teacher finds the objects of the segmentation data."""
    _objectness(spec, job)
    for task in selected(spec):
        if evaluate(spec, task, job.run_dir, task_file(job.run_dir, task), job.seed,
                    f"{job.variant.name} / seed {job.seed}") and after_each is not None:
            after_each()


def run_task_floors(spec: StudySpec, after_each: Callable[[], Any] | None = None) -> None:
    """The random-init floors of every selected task evaluation, seed by seed."""
    if not spec.eval.tasks:
        return
    cfg = variant_config(spec, spec.variants[0], 0)
    for seed in spec.eval.task_floor_seeds:
        for task in selected(spec):
            if evaluate(spec, task, None, floor_task_file(spec, task, seed), seed,
                        f"random-init floor, seed {seed}", cfg=cfg) and after_each is not None:
                after_each()
