"""Semantic segmentation scores from one confusion matrix: mIoU, pixel accuracy, per-class IoU."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hpm.eval.segment.recipes import IGNORE_INDEX


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``[K, K]`` int64 counts, rows the true class and columns the predicted one; pixels labelled
    ``ignore_index`` are not counted.

    Args:
        pred: Predicted classes, any shape.
        target: True classes, the same shape.
        num_classes: ``K``.
        ignore_index: The label of unscored pixels.
    """
    keep = target != ignore_index
    pairs = target[keep].long() * num_classes + pred[keep].long()  # [P]
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: Tensor) -> dict[str, Any]:
    """mIoU and pixel accuracy (in %) and each class's IoU (in %, None for a class neither present
    nor predicted, left out of the mean, as mmsegmentation does).

    Args:
        confusion: ``[K, K]`` counts of :func:`confusion_matrix` (summed over images and processes).
    """
    confusion = confusion.double()
    hits = confusion.diag()  # [K]
    union = confusion.sum(0) + confusion.sum(1) - hits  # [K]
    iou = [100.0 * float(h / u) if u > 0 else None for h, u in zip(hits, union, strict=True)]
    seen = [v for v in iou if v is not None]
    total = float(confusion.sum())
    return {
        "miou": sum(seen) / len(seen) if seen else math.nan,
        "pixel_acc": 100.0 * float(hits.sum()) / total if total else math.nan,
        "per_class_iou": iou,
    }
