"""The dense evaluations of a study (``eval.dense``): every run, and random-init floors,
fine-tuned for segmentation (``hpm eval segment``) or detection (``hpm eval detect``).

Each evaluation of a run is one result file, ``RUN/eval/study_<name>.json`` (its checkpoints: the
same path without ``.json``), run with the recipe seed = the pre-training seed and the labelled
images chosen by ``eval.seed`` (the same for every encoder). A floor is a random-init encoder of
the study's architecture, init seed = recipe seed = s (``eval.dense_floor_seeds``), on the same
labelled images: ``FLOORS/random_init_<name>_seed_<s>.json``. A re-run continues: a finished file
is kept, an interrupted fine-tune resumes from its checkpoints.
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
from hpm.study.spec import DenseEval, StudySpec, variant_config


def selected(spec: StudySpec) -> list[DenseEval]:
    """The dense evaluations this call runs (``eval.dense_only``, else all)."""
    only = spec.eval.dense_only
    return [d for d in spec.eval.dense if only is None or d.name in only]


def dense_file(run_dir: Path, dense: DenseEval) -> Path:
    """A run's result of one dense evaluation."""
    return eval_file(run_dir, dense.name)


def floor_dense_file(spec: StudySpec, dense: DenseEval, seed: int) -> Path:
    """A random-init floor's result of one dense evaluation."""
    return floor_dir(spec) / f"random_init_{dense.name}_seed_{seed}.json"


def figure(path: Path, dotted: str) -> float | None:
    """The figure at ``dotted`` (e.g. ``box.AP``) of a result file's ``result``; None if missing.
    Detection's AP (a fraction) is given in percent, as segmentation's mIoU is."""
    data = read_json(path)
    if data is None:
        return None
    node: Any = data["result"]
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        return None
    return 100.0 * float(node) if data.get("protocol") == "detect" else float(node)


def _options(spec: StudySpec, dense: DenseEval, out: Path, recipe_seed: int, cfg: Config | None,
             init_seed: int | None) -> Any:
    """The options of ``hpm eval segment`` / ``detect`` for one result."""
    common = dict(data_dir=dense.data_dir, labels=dense.labels, seed=spec.eval.seed, out=out,
                  precision=spec.eval.precision, random_init=cfg is not None, cfg=cfg, init_seed=init_seed)
    overrides = {**dense.overrides, "seed": recipe_seed}
    if dense.task == "segment":
        from hpm.eval.segment import SegmentOptions, build_segment_config

        return SegmentOptions(**common, recipe=build_segment_config(dense.recipe, overrides))
    from hpm.eval.detect import DetectOptions, build_detect_config

    return DetectOptions(**common, recipe=build_detect_config(dense.recipe, overrides))


def evaluate(spec: StudySpec, dense: DenseEval, source: Path | None, out: Path, recipe_seed: int, what: str,
             cfg: Config | None = None) -> bool:
    """One dense result into ``out`` (``source`` None: a random-init encoder of ``cfg``, init
    seed = ``recipe_seed``); False (nothing done) if it is there already."""
    if out.is_file():
        return False
    LOG.info("study %s: %s: %s", spec.name, what, dense.name)
    opts = _options(spec, dense, out, recipe_seed, cfg, recipe_seed if cfg is not None else None)
    if dense.task == "segment":
        from hpm.eval.segment import run_segment_eval

        run_segment_eval(source, opts)
    else:
        from hpm.eval.detect import run_detect_eval

        run_detect_eval(source, opts)
    return True


def eval_run_dense(spec: StudySpec, job: Job, after_each: Callable[[], Any] | None = None) -> None:
    """The dense results of one finished run (``after_each``: called after each one computed),
    after whether its teacher finds the objects of the segmentation data (:mod:`.objectness`)."""
    segment = next((d for d in spec.eval.dense if d.task == "segment"), None)
    out = eval_file(job.run_dir, "objectness")
    if segment is not None and (read_json(out) or {}).get("version", 0) < OBJECTNESS_VERSION:
        LOG.info("study %s: %s / seed %d: objectness", spec.name, job.variant.name, job.seed)
        write_json(out, objectness(job.run_dir, Path(segment.data_dir), spec.eval.ranking_images,
                                   spec.eval.ranking_masks, spec.eval.seed))
    for dense in selected(spec):
        if evaluate(spec, dense, job.run_dir, dense_file(job.run_dir, dense), job.seed,
                    f"{job.variant.name} / seed {job.seed}") and after_each is not None:
            after_each()


def run_dense_floors(spec: StudySpec, after_each: Callable[[], Any] | None = None) -> None:
    """The random-init floors of every selected dense evaluation, seed by seed."""
    if not spec.eval.dense:
        return
    cfg = variant_config(spec, spec.variants[0], 0)
    for seed in spec.eval.dense_floor_seeds:
        for dense in selected(spec):
            if evaluate(spec, dense, None, floor_dense_file(spec, dense, seed), seed,
                        f"random-init floor, seed {seed}", cfg=cfg) and after_each is not None:
                after_each()
