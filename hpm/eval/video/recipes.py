"""Video fine-tuning recipes: the image recipe's keys (:class:`~hpm.eval.recipes.FinetuneConfig`)
with the augmentations a clip pipeline lacks refused, and the named video recipes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import model_validator

from hpm.config import load_yaml_mapping, parse_overrides
from hpm.config.recipe import validate_recipe
from hpm.errors import ConfigError
from hpm.eval.recipes import FinetuneConfig


class VideoFinetuneConfig(FinetuneConfig):
    """A video fine-tune recipe: every key of the image recipe; RandAugment, random erasing,
    mixup and cutmix are not available for clips (one random resized crop and flip per clip are)."""

    @model_validator(mode="after")
    def _check_video(self) -> "VideoFinetuneConfig":
        for name in ("mixup", "cutmix", "reprob"):
            if getattr(self, name) > 0:
                raise ValueError(f"{name} is not available for clips; set {name}=0")
        if self.auto_augment:
            raise ValueError("auto_augment is not available for clips; leave it unset")
        return self


VIDEO_RECIPES: dict[str, dict[str, Any]] = {
    # The CPU recipe (Moving Fashion-MNIST at video_small's 16 x 32 x 32): 20 epochs, batch 16, absolute
    # lr 1e-3 (blr 1.6e-2 x 16 / 256), 2 warm-up epochs, layer decay 0.75, drop path 0.1, smoothing 0.1,
    # no mixup and no flip (a horizontal flip turns east into west: the motion label changes).
    "video_small": dict(
        epochs=20, batch_size=16, blr=1.6e-2, warmup_epochs=2, layer_decay=0.75, drop_path=0.1, weight_decay=0.05,
        smoothing=0.1, hflip=0.0, crop_scale=(0.8, 1.0), train_subset=None, test_subset=None, eval_batch_size=16,
    ),
    # VideoMAE's Something-Something v2 fine-tune of ViT-B: 40 epochs, batch 384 (48 x 8 accumulation
    # steps on one process; with torchrun keep batch_size * accum_steps * processes = 384), lr 1e-3 x 384 / 256,
    # 5 warm-up epochs, layer decay 0.75, drop path 0.1, weight decay 0.05, smoothing 0.1, no flip. VideoMAE
    # also uses RandAugment, random erasing and mixup / cutmix, which the clip pipeline does not have.
    "video_b16": dict(
        epochs=40, batch_size=48, accum_steps=8, blr=1e-3, min_lr=1e-6, warmup_epochs=5, layer_decay=0.75,
        drop_path=0.1, weight_decay=0.05, smoothing=0.1, hflip=0.0, crop_scale=(0.08, 1.0), head_init_std=2e-5,
        train_subset=None, test_subset=None, eval_every=1, eval_batch_size=8, num_workers=10,
    ),
}
DEFAULT_VIDEO_RECIPE = "video_small"


def build_video_finetune_config(
    recipe: str | None = None, file: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> VideoFinetuneConfig:
    """Resolve a video recipe (default ``video_small``), a YAML file of keys and ``key=value``
    overrides (later wins).

    Raises:
        ConfigError: Unknown recipe, file or key, or an invalid value.
    """
    recipe = recipe or DEFAULT_VIDEO_RECIPE
    if recipe not in VIDEO_RECIPES:
        raise ConfigError(f"unknown video fine-tuning recipe {recipe!r}. Valid recipes for a video run: "
                          f"{', '.join(VIDEO_RECIPES)}")
    raw: dict[str, Any] = copy.deepcopy(VIDEO_RECIPES[recipe])
    if file is not None:
        loaded = load_yaml_mapping(file, "fine-tuning config file")
        raw.update(loaded.get("finetune", loaded))
    raw.update(parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {}))
    return validate_recipe(VideoFinetuneConfig, raw, "video fine-tuning")
