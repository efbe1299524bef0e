"""mIoU, pixel accuracy and per-class IoU from one confusion matrix, on a case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hpm.eval.segment import confusion_matrix, segmentation_scores


def test_scores_of_a_hand_computed_case() -> None:
    # 3 classes; 255 is ignored whatever is predicted there; class 2 is neither present nor predicted
    target = torch.tensor([[0, 0, 0, 1], [1, 1, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 0, 2, 0]])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    scores = segmentation_scores(confusion)
    # class 0: 2 hits / (3 true + 3 predicted - 2) = 1/2; class 1 likewise: 2 / (3 + 3 - 2)
    assert scores["per_class_iou"] == [50.0, 50.0, None]
    assert scores["miou"] == 50.0  # the absent class is left out of the mean
    assert scores["pixel_acc"] == pytest.approx(100 * 4 / 6)


def test_confusion_matrices_add_up_over_images() -> None:
    a = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), 2)
    b = confusion_matrix(torch.tensor([1, 1, 0]), torch.tensor([1, 1, 1]), 2)
    scores = segmentation_scores(a + b)
    # class 0: 1 hit / (2 true + 2 predicted - 1) = 1/3; class 1: 2 / (3 + 3 - 2) = 1/2
    assert scores["per_class_iou"] == pytest.approx([100 / 3, 50.0])
    assert scores["miou"] == pytest.approx((100 / 3 + 50) / 2)
    assert scores["pixel_acc"] == pytest.approx(60.0)


def test_only_ignored_pixels_give_no_score() -> None:
    scores = segmentation_scores(confusion_matrix(torch.tensor([1]), torch.tensor([255]), 2))
    assert math.isnan(scores["miou"]) and scores["per_class_iou"] == [None, None]
