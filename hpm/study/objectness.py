"""Does a run's teacher find the objects? Its predicted loss, and the real reconstruction loss, of
the patches of validation scenes, against which patches hold an object (their annotation).

Per image, the share of (object patch, background patch) pairs in which the object patch scores
higher (the AUC; ties count half; chance 0.5), averaged over the images that have both kinds. An
object patch: at least half of its pixels belong to an item (annotation > 0, not ignored).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

OBJECT_SHARE = 0.5  # a patch at least this much covered by items is an object patch
VERSION = 1


def object_patches(annotation: Path, size: int, patch: int) -> Tensor:
    """bool ``[L]``: which patches of the annotation (resized to ``size``, nearest) are objects."""
    with Image.open(annotation) as img:
        labels = torch.from_numpy(np.array(img.resize((size, size), Image.NEAREST), dtype=np.int64))  # [H, W]
    item = ((labels > 0) & (labels != 255)).float()  # [H, W]
    share = item.reshape(size // patch, patch, size // patch, patch).mean(dim=(1, 3))  # [h, w]
    return (share >= OBJECT_SHARE).flatten()


def object_auc(scores: Tensor, objects: Tensor) -> float | None:
    """Mean over images of P(object patch scores above a background patch); None without both kinds.

    Args:
        scores: float ``[N, L]`` (NaN: not scored, left out).
        objects: bool ``[N, L]``.
    """
    aucs = []
    for s, o in zip(scores, objects, strict=True):
        finite = torch.isfinite(s)
        pos, neg = s[o & finite], s[~o & finite]
        if len(pos) and len(neg):
            diff = pos[:, None] - neg[None, :]  # [P, B]
            aucs.append(float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()))
    return float(np.mean(aucs)) if aucs else None


def scene_images(files: list[Path], cfg: Any) -> Tensor:
    """The images of ``files`` as the run's encoder takes them (evaluation transform): ``[N, C, H, W]``."""
    from hpm.data.transforms import build_eval_transform
    from hpm.eval.data import normalisation

    channels = int(cfg.model.in_chans or 3)
    transform = build_eval_transform(cfg.model.img_size, *normalisation(cfg.data, channels), cfg.data.fit)
    out = []
    for f in files:
        with Image.open(f) as img:
            array = np.array(img.convert("RGB" if channels == 3 else "L"))
        out.append(transform(torch.from_numpy(array).reshape(*array.shape[:2], channels).permute(2, 0, 1)))
    return torch.stack(out)


def objectness(run_dir: Path, data_dir: Path, count: int, num_masks: int, seed: int) -> dict[str, Any]:
    """The AUCs of the teacher's predicted loss (partial views, as the ranking's masked-view average)
    and of the real loss (random masks) on the first ``count`` validation scenes of ``data_dir``."""
    from hpm.eval.patch_loss import load_pretrained, masked_view_scores, real_patch_loss, run_target

    models = load_pretrained(run_dir)
    cfg, student = models.cfg, models.student
    names = sorted((data_dir / "images" / "validation").glob("*.png"))[:count]
    imgs = scene_images(names, cfg)  # [N, C, H, W]
    objects = torch.stack([object_patches(data_dir / "annotations" / "validation" / f"{p.stem}.png",
                                          cfg.model.img_size, cfg.model.patch_size) for p in names])  # [N, L]
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    real, _ = real_patch_loss(student, imgs, num_masks, cfg.mask.ratio, gen, run_target(models))  # [N, L]
    out: dict[str, Any] = {"version": VERSION, "images": len(imgs), "masks": num_masks,
                           "object_share": float(objects.float().mean()), "real_object_auc": object_auc(real, objects)}
    teacher = models.teacher if models.teacher is not None and models.teacher.has_predictor else None
    if teacher is not None:
        scores = masked_view_scores(teacher, imgs, num_masks, cfg.mask.ratio, torch.Generator().manual_seed(seed + 1))
        out["teacher_object_auc"] = object_auc(scores, objects)
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out
