"""Detection recipes: the keys of a detection fine-tune (:class:`DetectConfig`), the named recipes
(:data:`RECIPES`) and how a recipe and ``key=value`` overrides resolve into one.

The ViT runs global attention in every block (no window attention): its cost grows with the
square of the token count, ``(image_size / patch)^2``. It is meant for up to 4096 tokens (ViT-B/16
at 1024 px, the ``coco`` recipe, with PyTorch's fused attention); larger inputs need windowed
blocks, which this task leaves out.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict

from hpm.config import Precision, parse_overrides
from hpm.engine.supervised import step_plan
from hpm.config.recipe import validate_recipe
from hpm.errors import ConfigError


class DetectConfig(BaseModel):
    """One detection recipe. ``batch_size`` is per process; ``lr`` is absolute."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    image_size: int = 64  # the ViT's input side: training crops and the resized test images
    scale_range: tuple[float, float] = (1.0, 1.0)  # large-scale jitter of the training images (1, 1: none)
    hflip: float = 0.5
    min_box_size: float = 2.0  # training boxes narrower or lower than this (px) are dropped when loading
    epochs: int = 5
    iters: int | None = None  # set: the run's optimizer steps (one partial pass, or whole passes rounded up)
    batch_size: int = 4
    lr: float = 1e-3
    warmup_iters: int = 4
    lr_drops: tuple[float, float] = (0.889, 0.963)  # lr x 0.1 at these fractions of the run (ViTDet)
    weight_decay: float = 0.1
    layer_decay: float = 0.7
    drop_path: float = 0.1
    pyramid_channels: int = 64  # the simple pyramid's width (ViTDet: 256)
    box_head_dim: int = 256  # the box head's two fully connected layers (torchvision: 1024)
    mask_head_dim: int = 64  # the mask head's four convolutions (torchvision: 256)
    rpn_proposals: int = 300  # proposals kept per image after the RPN's NMS (torchvision: 2000 / 1000)
    roi_batch: int = 128  # proposals sampled per image for the box and mask losses (torchvision: 512)
    anchor_scale: float = 8.0  # anchor side / level stride (one size per level)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    detections_per_img: int = 100
    score_thresh: float = 0.05
    clip_grad: float | None = None
    eval_every: int = 0  # epochs between evaluations; 0: only after the last epoch
    precision: Precision = "auto"
    num_workers: int = 0
    seed: int = 0
    ckpt_every_steps: int | None = None  # a checkpoint every N optimizer steps too; may change on resume

    def step_plan(self, batches: int) -> tuple[int, int]:
        """``(steps_per_epoch, epochs)`` for a loader of ``batches`` per pass (see :func:`~hpm.engine.supervised.step_plan`)."""
        return step_plan(batches, self.epochs, self.iters)


RECIPES: dict[str, dict[str, Any]] = {
    # the scenes of `hpm data scenes` at 64 px: minutes on 2 CPU cores
    "small": {},
    # ViTDet-B on COCO (Mask R-CNN, 1024 px, large-scale jitter 0.1-2.0, 100 epochs of 64 images): a GPU recipe
    "coco": dict(
        image_size=1024, scale_range=(0.1, 2.0), min_box_size=0.0, epochs=100, batch_size=64, lr=1e-4,
        warmup_iters=250, weight_decay=0.1, layer_decay=0.7, drop_path=0.1, pyramid_channels=256, box_head_dim=1024,
        mask_head_dim=256, rpn_proposals=1000, roi_batch=512, num_workers=8, precision="bf16",
    ),
}


def build_detect_config(recipe: str = "small", overrides: list[str] | dict[str, Any] | None = None) -> DetectConfig:
    """Resolve a recipe and ``key=value`` overrides (later wins).

    Raises:
        ConfigError: Unknown recipe or key, or an invalid value.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown detection recipe {recipe!r}. Valid recipes: {', '.join(RECIPES)}")
    given = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    return validate_recipe(DetectConfig, {**copy.deepcopy(RECIPES[recipe]), **given}, "detection")
