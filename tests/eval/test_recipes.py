"""Fine-tuning recipes: the few-label recipe's schedule stretched to the images seen."""

from __future__ import annotations

import pytest

from hpm.errors import ConfigError
from hpm.eval.recipes import RECIPES, build_finetune_config, fit_schedule


@pytest.mark.parametrize(("labels", "epochs"), [(600, 167), (6000, 17), (10000, 10), (60000, 2), (300000, 1)])
def test_few_labels_sees_as_many_images_as_the_reference_recipe(labels: int, epochs: int) -> None:
    reference = build_finetune_config("reference")
    few = fit_schedule(build_finetune_config("few_labels"), labels)
    assert few.epochs == epochs and few.images_seen == reference.epochs * reference.train_subset == 100_000
    assert few.warmup_epochs / few.epochs == pytest.approx(reference.warmup_epochs / reference.epochs)
    for key in ("blr", "layer_decay", "batch_size", "drop_path", "smoothing", "crop_scale", "hflip"):
        assert getattr(few, key) == getattr(reference, key)
    assert few.test_subset is None  # the whole test split
    assert fit_schedule(few, labels) == few  # once is all it does


def test_a_recipe_without_images_seen_keeps_its_schedule() -> None:
    cfg = build_finetune_config("reference")
    assert fit_schedule(cfg, 600) == cfg
    assert [name for name, recipe in RECIPES.items() if "images_seen" in recipe] == ["few_labels"]


def test_given_epochs_turn_the_stretch_off() -> None:
    assert build_finetune_config("few_labels", overrides={"epochs": 5}).images_seen is None
    assert fit_schedule(build_finetune_config("few_labels", overrides=["epochs=5"]), 600).epochs == 5
    both = build_finetune_config("few_labels", overrides={"epochs": 5, "images_seen": 3000})
    assert fit_schedule(both, 600).epochs == 5  # 3000 / 600 images


def test_images_seen_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="images_seen must be >= 1"):
        build_finetune_config("few_labels", overrides={"images_seen": 0})
