"""Fine-tuning: recipes (the paper's numbers), config errors and short runs on tiny data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from hpm.config import DataConfig
from hpm.errors import ConfigError
from hpm.eval.data import build_eval_data
from hpm.eval.finetune import RECIPES, FinetuneConfig, build_finetune_config, run_finetune
from hpm.eval.finetune.augment import augment_ops, train_transform
from hpm.eval.finetune.classifier import build_classifier
from hpm.models import build_model
from tests.eval.conftest import tiny_config, write_image_folder


def test_paper_recipe_has_the_spec_numbers() -> None:
    cfg = build_finetune_config("paper_vit_b16")
    assert (cfg.epochs, cfg.batch_size * cfg.accum_steps, cfg.blr, cfg.warmup_epochs) == (100, 384, 5e-4, 5)
    assert (cfg.layer_decay, cfg.weight_decay, cfg.drop_path) == (0.8, 0.05, 0.1)
    assert cfg.auto_augment is not None and cfg.auto_augment.startswith("rand-m9")
    assert (cfg.reprob, cfg.mixup, cfg.cutmix, cfg.smoothing) == (0.25, 0.8, 1.0, 0.1)
    assert cfg.train_subset is None and cfg.test_subset is None and cfg.head_init_std == 2e-5


def test_reference_recipe_is_the_default_and_small_the_quick_check() -> None:
    cfg = build_finetune_config()
    assert (cfg.epochs, cfg.blr, cfg.layer_decay, cfg.train_subset, cfg.val_holdout) == (10, 1e-2, 0.5, 10000, 0)
    assert build_finetune_config("small") == FinetuneConfig() and RECIPES["small"] == {}


def test_overrides_and_yaml(tmp_path: Path) -> None:
    file = tmp_path / "ft.yaml"
    file.write_text("finetune:\n  epochs: 7\n  layer_decay: 0.65\n")
    cfg = build_finetune_config("paper_vit_b16", file, ["blr=1e-3", "auto_augment=null"])
    assert (cfg.epochs, cfg.layer_decay, cfg.blr, cfg.auto_augment) == (7, 0.65, 1e-3, None)


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown fine-tuning key 'layer_decy'.*layer_decay"):
        build_finetune_config(overrides=["layer_decy=0.7"])
    with pytest.raises(ConfigError, match="unknown fine-tuning recipe 'vit_z'.*small, paper_vit_b16"):
        build_finetune_config("vit_z")


def test_ckpt_every_steps_is_positive_or_off() -> None:
    assert FinetuneConfig().ckpt_every_steps is None  # checkpoints after each epoch only
    assert build_finetune_config(overrides=["ckpt_every_steps=50"]).ckpt_every_steps == 50
    with pytest.raises(ConfigError, match="ckpt_every_steps must be >= 1 or null"):
        build_finetune_config(overrides=["ckpt_every_steps=0"])


def test_mixup_needs_an_even_batch() -> None:
    with pytest.raises(ConfigError, match="batch_size must be even"):
        build_finetune_config(overrides={"batch_size": 33, "cutmix": 1.0})
    assert build_finetune_config(overrides={"batch_size": 33}).batch_size == 33  # small: no mixup


@pytest.fixture
def squares(tmp_path: Path):
    """Two classes of 20 px images told apart by where a bright square sits."""
    root = write_image_folder(tmp_path / "sq", {"left": 24, "right": 24})
    write_image_folder(root, {"left": 10, "right": 10}, split="val", seed=1)
    return build_eval_data(DataConfig(data_dir=str(root), channels=1), 32, 1)


def test_fine_tuning_learns_a_tiny_task(squares) -> None:
    torch.manual_seed(0)
    encoder = build_model(tiny_config().model)
    before = encoder.blocks[0].attn.qkv.weight.clone()
    cfg = FinetuneConfig(
        epochs=8, batch_size=16, blr=2e-2, warmup_epochs=1, mixup=0, cutmix=0, smoothing=0, reprob=0,
        crop_scale=(0.9, 1.0), hflip=0, drop_path=0, num_workers=0, eval_every=4,
    )
    result, model = run_finetune(encoder, squares, cfg, torch.device("cpu"), "fp32", progress=False)
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, before)  # the encoder is not modified
    assert not torch.equal(model.blocks[0].attn.qkv.weight, before)
    assert [h["epoch"] for h in result["history"]] == [4, 8]
    assert result["top1"] >= 90.0 and result["num_test"] == 20
    assert result["steps"] == 8 * (48 // 16) and result["effective_batch"] == 16


def test_token_pooling_reads_the_class_token_under_the_pretrained_norm() -> None:
    torch.manual_seed(0)
    encoder = build_model(tiny_config(depth=2).model).eval()
    model = build_classifier(encoder, 2, FinetuneConfig(global_pool="token", drop_path=0), torch.device("cpu"))
    model.eval().reset_classifier(0)
    images = torch.randn(3, 1, 32, 32)  # [N, C, H, W]
    with torch.no_grad():
        assert torch.allclose(model(images), encoder.forward_encoder(images)[:, 0], atol=1e-5)  # [N, D]
    with pytest.raises(ConfigError, match="global_pool"):
        build_finetune_config(overrides=["global_pool=max"])


def test_full_recipe_runs_with_mixup_randaugment_and_layer_decay(squares) -> None:
    torch.manual_seed(0)
    encoder = build_model(tiny_config(depth=2).model)
    cfg = FinetuneConfig(
        epochs=1, batch_size=8, accum_steps=2, auto_augment="rand-m9-mstd0.5-inc1", num_workers=0,
        mixup=0.8, cutmix=1.0, reprob=0.25, crop_scale=(0.08, 1.0), head_init_std=2e-5,
    )
    result, model = run_finetune(encoder, squares, cfg, torch.device("cpu"), "bf16", progress=False)
    assert math.isfinite(result["final_loss"]) and 0.0 <= result["top1"] <= 100.0
    assert result["effective_batch"] == 16 and result["steps"] == 3
    assert result["recipe"]["mixup"] == 0.8 and result["recipe"]["cutmix"] == 1.0


def test_randaugment_posterize_at_full_magnitude_gives_black_as_pillow_12_did(squares) -> None:
    """timm asks Pillow for 0 bits at magnitude 10, which Pillow 13 refuses (the paper recipe's
    m9 + mstd 0.5 reaches it in ~2% of draws): the fine-tune transform must keep running."""
    cfg = build_finetune_config("small", overrides=["auto_augment=rand-m10-n1-mstd0-inc1"])
    posterize = [op for op in augment_ops(train_transform(squares, cfg)) if op.name == "PosterizeIncreasing"]
    assert len(posterize) == 1
    op = posterize[0]
    op.prob = 1.0  # always apply
    for shape in [(16, 16), (16, 16, 3)]:  # grayscale and RGB
        img = Image.fromarray(np.random.default_rng(0).integers(1, 256, shape, dtype=np.uint8))
        op.magnitude = 10  # no noise (mstd 0): 4 - 4 = 0 bits
        assert np.array(op(img)).max() == 0
        op.magnitude = 5  # 4 - 2 = 2 bits: Pillow's own posterize
        assert np.array_equal(np.array(op(img)), np.array(ImageOps.posterize(img, 2)))


def test_too_few_images_for_one_step(squares) -> None:
    cfg = FinetuneConfig(batch_size=64, num_workers=0)
    with pytest.raises(ConfigError, match="48 training images give no optimizer step"):
        run_finetune(build_model(tiny_config().model), squares, cfg, torch.device("cpu"), "fp32", progress=False)


def test_layer_decay_scales_the_lowest_layers_most() -> None:
    from timm.optim import create_optimizer_v2

    from hpm.export import build_timm_encoder

    vit = build_timm_encoder(build_model(tiny_config(depth=2).model), global_pool="avg", num_classes=3)
    opt = create_optimizer_v2(vit, opt="adamw", lr=1.0, weight_decay=0.05, layer_decay=0.8)
    scale = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert scale[id(vit.head.weight)] == 1.0
    assert math.isclose(scale[id(vit.blocks[1].mlp.fc1.weight)], 0.8)
    assert math.isclose(scale[id(vit.patch_embed.proj.weight)], 0.8**3)
