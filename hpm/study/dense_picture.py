"""The dense study's picture: validation scenes, their ground truth, each variant's segmentation
(seed 0) and, beside them, the teacher's predicted loss and the real loss per patch: does the
teacher find the objects?"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hpm.engine.logger import LOG
from hpm.study.tasks import task_file
from hpm.study.files import read_json
from hpm.study.picture_grid import Panel, save_panels
from hpm.study.spec import TaskEval, StudySpec, run_dir

PICTURE = "dense_predictions.png"


def _segment_eval(spec: StudySpec) -> TaskEval | None:
    """The segmentation shown: the first with a UperNet head, else the first at all."""
    segment = [d for d in spec.eval.tasks if d.task == "segment"]
    upernet = [d for d in segment if d.overrides.get("head", "upernet") == "upernet"]
    return (upernet or segment or [None])[0]


def _columns(spec: StudySpec, dense: TaskEval, files: list[Path]) -> list[Panel]:
    """``(title, one image per scene, colour map or "")`` of every prediction and loss column."""
    from hpm.eval.patch_loss import load_pretrained, masked_view_scores, real_patch_loss, run_target
    from hpm.eval.segment import load_segmenter
    from hpm.eval.segment.picture import colour, palette, predict
    from hpm.eval.segment.recipes import SegmentConfig
    from hpm.study.objectness import scene_images

    columns: list[Panel] = []
    loss_maps = None
    for v in spec.variants:
        record = read_json(task_file(run_dir(spec, v.name, v.seeds[0]), dense))
        if record is None or "export" not in record:
            continue
        model, meta = load_segmenter(record["export"]), read_json(Path(record["export"]))
        recipe = SegmentConfig.model_validate(meta["recipe"])  # type: ignore[index]
        models = load_pretrained(run_dir(spec, v.name, v.seeds[0]))
        imgs = scene_images(files, models.cfg)  # [N, C, H, W]
        size = imgs.shape[-2:]
        preds = [colour(predict(model, img, recipe, tuple(size)), palette(recipe.num_classes)) for img in imgs]
        columns.append((f"{v.name}: {dense.name}", [p.permute(1, 2, 0).numpy() for p in preds], ""))
        if loss_maps is None and models.teacher is not None and models.teacher.has_predictor:
            grid = models.cfg.model.img_size // models.cfg.model.patch_size
            gen = torch.Generator().manual_seed(spec.eval.seed)
            predicted = masked_view_scores(models.teacher, imgs, spec.eval.ranking_masks, models.cfg.mask.ratio, gen)
            real, _ = real_patch_loss(models.student, imgs, spec.eval.ranking_masks, models.cfg.mask.ratio,
                                      torch.Generator().manual_seed(spec.eval.seed), run_target(models))
            loss_maps = [(f"{v.name}: teacher's predicted loss", predicted.reshape(-1, grid, grid).numpy(), "magma"),
                         (f"{v.name}: real loss", real.reshape(-1, grid, grid).numpy(), "magma")]
    return columns + [(title, list(maps), cmap) for title, maps, cmap in (loss_maps or [])]


def draw_dense_picture(spec: StudySpec, out: Path, count: int = 4) -> Path | None:
    """Write ``out`` (PNG) from the seed-0 runs' segmentation exports; None (nothing written) before
    any variant has one."""
    dense = _segment_eval(spec)
    if dense is None:
        return None
    root = Path(dense.data_dir)
    files = sorted((root / "images" / "validation").glob("*.png"))[:count]
    columns = _columns(spec, dense, files)
    if not columns:
        return None
    scenes = [np.array(Image.open(f).convert("RGB")) for f in files]
    from hpm.eval.segment import build_segment_config
    from hpm.eval.segment.picture import colour, palette

    num_classes = build_segment_config(dense.recipe or "small", dense.overrides).num_classes
    truth = [colour(torch.from_numpy(np.array(Image.open(root / "annotations" / "validation" / f"{f.stem}.png"),
                                              dtype=np.int64)), palette(num_classes)).permute(1, 2, 0).numpy()
             for f in files]
    save_panels([("scene", scenes, ""), ("ground truth", truth, ""), *columns], out)
    LOG.info("study %s: wrote %s", spec.name, out)
    return out
