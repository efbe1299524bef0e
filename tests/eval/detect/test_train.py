"""Training: one step of Mask R-CNN on the simple pyramid runs with a finite loss and moves the
weights, the optimizer decays the ViT's lr by layer, and the coco recipe's config works at a tiny size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tqdm import tqdm

from hpm.engine import distributed as D
from hpm.engine.precision import resolve_device
from hpm.eval.detect import RECIPES, build_detect_config, coco_paths, load_detect_data
from hpm.eval.detect.run import setup
from hpm.models import build_model
from tests.eval.conftest import tiny_config

STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _setup(scenes: Path, recipe: str, overrides: list[str], depth: int = 1):
    cfg = build_detect_config(recipe, overrides)
    data = load_detect_data(coco_paths(scenes, (None, None), (None, None)), 3, *STATS, labels=8)
    torch.manual_seed(0)
    encoder = build_model(tiny_config(in_chans=3, img_size=cfg.image_size, depth=depth).model)
    return setup(encoder, data, cfg, resolve_device("cpu"), "fp32", D.DistInfo(), None, {})


def test_a_training_step_runs_with_a_finite_loss(scenes: Path) -> None:
    run = _setup(scenes, "small", ["batch_size=4"])
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    with tqdm(disable=True) as bar:
        run.train_step(run.start_epoch(0, 0), 0, bar)
    assert run.step == 1 and run.loss_n == 1 and math.isfinite(run.loss_sum) and run.loss_sum > 0
    moved = {n for n, p in run.model.named_parameters() if not torch.equal(p, before[n])}
    assert "backbone.vit.blocks.0.attn.qkv.weight" in moved and "backbone.pyramid.outputs.0.0.weight" in moved
    assert any(n.startswith("roi_heads.mask_predictor") for n in moved) and any(n.startswith("rpn.") for n in moved)


def test_the_vit_takes_layer_decayed_learning_rates(scenes: Path) -> None:
    run = _setup(scenes, "small", ["layer_decay=0.5"], depth=2)
    scales = sorted({g["lr_scale"] for g in run.optimizer.param_groups})
    assert scales == [0.5 ** 3, 0.5 ** 2, 0.5, 1.0]  # stem, 2 blocks, the pyramid and heads
    pos_embed = run.model.backbone.vit.pos_embed
    (group,) = [g for g in run.optimizer.param_groups if any(p is pos_embed for p in g["params"])]
    assert group["weight_decay"] == 0.0 and group["lr_scale"] == 0.5 ** 3


def test_the_coco_recipe_at_a_tiny_size(scenes: Path) -> None:
    recipe = RECIPES["coco"]
    assert (recipe["image_size"], recipe["scale_range"], recipe["epochs"]) == (1024, (0.1, 2.0), 100)
    assert (recipe["batch_size"], recipe["lr"], recipe["layer_decay"], recipe["drop_path"]) == (64, 1e-4, 0.7, 0.1)
    assert recipe["pyramid_channels"] == 256
    run = _setup(scenes, "coco", ["image_size=64", "batch_size=2", "epochs=2", "warmup_iters=2", "num_workers=0",
                                  "pyramid_channels=16", "box_head_dim=32", "mask_head_dim=16", "rpn_proposals=50",
                                  "roi_batch=16"])
    assert run.cfg.scale_range == (0.1, 2.0) and (run.steps_per_epoch, run.epochs) == (4, 2)
    lrs = []
    for step in range(run.total_steps):
        run.schedule.step_update(step)
        lrs.append(run.optimizer.param_groups[-1]["lr"])
    assert lrs[0] < 1e-6 and lrs[2] == pytest.approx(1e-4)  # warm-up
    assert lrs[-1] == pytest.approx(1e-6) and lrs[-3] == pytest.approx(1e-4)  # two drops in the last 11 %
    images, targets = next(run.start_epoch(0, 0))  # large-scale jitter: 64 px crops, padded where smaller
    assert [tuple(im.shape) for im in images] == [(3, 64, 64)] * 2 and all(t["boxes"].shape[1] == 4 for t in targets)
