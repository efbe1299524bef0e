"""Segmentation recipes: the keys of a segmentation fine-tune (:class:`SegmentConfig`), the named
recipes (:data:`RECIPES`) and how a recipe and ``key=value`` overrides resolve into one."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from hpm.config import Precision, parse_overrides
from hpm.engine.supervised import step_plan
from hpm.config.recipe import validate_recipe
from hpm.errors import ConfigError

Head = Literal["upernet", "linear"]
IGNORE_INDEX = 255  # the label of pixels that are not scored (ADE20K's convention)


class SegmentConfig(BaseModel):
    """One segmentation recipe. ``batch_size`` is per process; ``lr`` is absolute."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    head: Head = "upernet"
    num_classes: int = 11  # after --reduce-zero-label; the scenes: background + 10 items
    reduce_zero_label: bool = False  # ADE20K: label 0 becomes the ignore value, the others minus 1
    crop_size: int = 64  # training crops and sliding-window inference (a multiple of the patch size)
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescale of the training images
    hflip: float = 0.5
    eval_stride: int | None = None  # sliding-window stride (None: two thirds of crop_size)
    epochs: int = 10
    iters: int | None = None  # set: the run's optimizer steps (one partial pass, or whole passes rounded up)
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 0.0
    warmup_iters: int = 4
    poly_power: float = 1.0
    weight_decay: float = 0.05
    layer_decay: float = 0.65
    drop_path: float = 0.1
    decoder_channels: int = 64  # UperNet's width
    clip_grad: float | None = None
    eval_every: int = 0  # epochs between evaluations; 0: only after the last epoch
    precision: Precision = "auto"
    num_workers: int = 0
    seed: int = 0
    ckpt_every_steps: int | None = None  # a checkpoint every N optimizer steps too; may change on resume

    def stride(self) -> int:
        """The sliding-window stride of inference."""
        return self.eval_stride or max(1, round(self.crop_size * 2 / 3))

    def step_plan(self, batches: int) -> tuple[int, int]:
        """``(steps_per_epoch, epochs)`` for a loader of ``batches`` per pass (see :func:`~hpm.engine.supervised.step_plan`)."""
        return step_plan(batches, self.epochs, self.iters)


RECIPES: dict[str, dict[str, Any]] = {
    # the scenes of `hpm data scenes` at 64 px (64 training images: about 80 s on one CPU thread)
    "small": {},
    # BEiT / MAE on ADE20K (UperNet, 512 crop, 160k iterations of 16 images): a GPU recipe
    "ade20k": dict(
        num_classes=150, reduce_zero_label=True, crop_size=512, eval_stride=341, iters=160_000, batch_size=16,
        lr=1e-4, warmup_iters=1500, layer_decay=0.65, weight_decay=0.05, drop_path=0.1, decoder_channels=768,
        num_workers=4,
    ),
}


def build_segment_config(recipe: str = "small", overrides: list[str] | dict[str, Any] | None = None) -> SegmentConfig:
    """Resolve a recipe and ``key=value`` overrides (later wins); ``epochs`` given without
    ``iters`` turns the recipe's ``iters`` off.

    Raises:
        ConfigError: Unknown recipe or key, or an invalid value.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown segmentation recipe {recipe!r}. Valid recipes: {', '.join(RECIPES)}")
    given = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    if "epochs" in given and "iters" not in given:
        given["iters"] = None
    raw = {**copy.deepcopy(RECIPES[recipe]), **given}
    return validate_recipe(SegmentConfig, raw, "segmentation")
