"""The dense study's detection picture: validation scenes with their ground-truth boxes and masks
beside the predictions of each variant's seed-0 detector and of the seed-0 random-init floor."""

from __future__ import annotations

import json
from pathlib import Path

from hpm.engine.logger import LOG
from hpm.study.files import read_json
from hpm.study.picture_grid import Panel, save_panels
from hpm.study.spec import StudySpec, TaskEval, run_dir
from hpm.study.tasks import floor_task_file, task_file

DET_PICTURE = "det_predictions.png"


def _detect_eval(spec: StudySpec) -> TaskEval | None:
    """The detection shown: the first with all labels, else the first at all."""
    detect = [t for t in spec.eval.tasks if t.task == "detect"]
    return ([t for t in detect if not t.labels] or detect or [None])[0]


def _prediction_files(spec: StudySpec, task: TaskEval) -> list[tuple[str, Path]]:
    """``(column title, COCO results file)`` of every seed-0 detector that has finished."""
    from hpm.eval.detect.protocol import predictions_file

    results = [(f"{v.name} (seed {v.seeds[0]})", task_file(run_dir(spec, v.name, v.seeds[0]), task))
               for v in spec.variants]
    if spec.eval.task_floor_seeds:
        seed = spec.eval.task_floor_seeds[0]
        results.append((f"random init (seed {seed})", floor_task_file(spec, task, seed)))
    return [(title, predictions_file(file)) for title, file in results
            if read_json(file) is not None and predictions_file(file).is_file()]


def draw_detection_picture(spec: StudySpec, out: Path, count: int = 4, min_score: float = 0.3) -> Path | None:
    """Write ``out`` (PNG): ``count`` validation scenes, the ground truth, then the predictions
    scoring at least ``min_score`` of every finished seed-0 detector; None (nothing written) before
    any has finished."""
    from hpm.eval.detect.data import coco_paths, read_coco
    from hpm.eval.detect.picture import draw_instances

    task = _detect_eval(spec)
    files = _prediction_files(spec, task) if task is not None else []
    if task is None or not files:
        return None
    json_file, image_dir = coco_paths(task.data_dir, (None, None), (None, None))[1]
    split = read_coco(json_file, image_dir)
    entries = split.images[:count]

    def column(anns_of: dict[int, list]) -> list:
        return [draw_instances(split, e, anns_of.get(e["id"], [])).permute(1, 2, 0).numpy() for e in entries]

    panels: list[Panel] = [("ground truth", column(split.anns), "")]
    for title, file in files:
        by_image: dict[int, list] = {}
        for r in json.loads(file.read_text()):
            if r["score"] >= min_score:
                by_image.setdefault(r["image_id"], []).append(r)
        panels.append((f"{title}: {task.name}", column(by_image), ""))
    save_panels(panels, out, cell=2.2)
    LOG.info("study %s: wrote %s", spec.name, out)
    return out
