"""How ``iters`` turns into passes over the data (segmentation and detection recipes)."""

from __future__ import annotations

import pytest

from hpm.engine.supervised import step_plan
from hpm.eval.detect.recipes import build_detect_config


@pytest.mark.parametrize(("batches", "epochs", "iters", "plan"), [
    (10, 3, None, (10, 3)),  # whole passes
    (10, 3, 4, (4, 1)),  # fewer steps than a pass: one partial pass
    (10, 3, 10, (10, 1)),
    (10, 3, 11, (10, 2)),  # more: whole passes, rounded up
    (10, 3, 30, (10, 3)),
])
def test_step_plan(batches: int, epochs: int, iters: int | None, plan: tuple[int, int]) -> None:
    assert step_plan(batches, epochs, iters) == plan


def test_the_detection_recipe_takes_iters() -> None:
    cfg = build_detect_config("small", ["iters=7"])
    assert cfg.step_plan(5) == (5, 2) and cfg.step_plan(100) == (7, 1)
