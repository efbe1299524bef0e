"""Sliding-window inference and the validation scores of a segmentation model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, autocast
from hpm.eval.segment.metrics import confusion_matrix, segmentation_scores


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Where the windows of one side begin: every ``stride``, the last one flush with the end."""
    count = max(size - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride, size - crop), 0) for i in range(count)})


def slide_logits(model: nn.Module, image: Tensor, num_classes: int, crop: int, stride: int) -> Tensor:
    """Class logits ``[1, K, H, W]`` of one image ``[1, C, H, W]`` (each side at least ``crop``),
    averaged over ``crop x crop`` windows ``stride`` apart."""
    _, _, height, width = image.shape
    logits = image.new_zeros(1, num_classes, height, width)  # [1, K, H, W]
    counts = image.new_zeros(1, 1, height, width)  # [1, 1, H, W]
    for top in window_starts(height, crop, stride):
        for left in window_starts(width, crop, stride):
            window = image[:, :, top:top + crop, left:left + crop]
            logits[:, :, top:top + crop, left:left + crop] += model(window).float()
            counts[:, :, top:top + crop, left:left + crop] += 1
    return logits / counts


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module, dataset: Dataset, num_classes: int, crop: int, stride: int, device: torch.device,
    precision: Resolved, dist: D.DistInfo,
) -> dict[str, object]:
    """mIoU, pixel accuracy and per-class IoU over ``dataset`` (resized images, full-size labels),
    each process scoring every ``world_size``-th image; the confusion matrices are summed."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # [K, K]
    for image, label in Subset(dataset, range(dist.rank, len(dataset), dist.world_size)):  # type: ignore[arg-type]
        with autocast(device, precision):
            logits = slide_logits(model, image[None].to(device), num_classes, crop, stride)
        logits = F.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False)  # [1, K, H0, W0]
        confusion += confusion_matrix(logits.argmax(1)[0], label.to(device), num_classes)
    model.train(was_training)
    return segmentation_scores(D.all_reduce_sum(confusion))
