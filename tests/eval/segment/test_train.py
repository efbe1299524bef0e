"""Training: the linear head learns on a frozen encoder, the floor (a random encoder of a preset)
runs from the command line, and the ADE20K recipe's config works at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hpm.cli import main
from hpm.engine.precision import resolve_device
from hpm.eval.segment import RECIPES, build_segment_config, load_segment_data, run_segment
from hpm.eval.segment.run import setup
from hpm.engine import distributed as D
from hpm.models import build_model
from tests.eval.conftest import tiny_config
from tests.eval.segment.conftest import write_ade

STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_the_linear_head_trains_and_the_encoder_stays_frozen(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", num_train=16, num_val=4)
    cfg = build_segment_config("small", ["head=linear", "num_classes=4", "crop_size=32", "batch_size=4",
                                         "epochs=6", "lr=0.05", "warmup_iters=0", "eval_every=3"])
    data = load_segment_data(root, cfg, 3, *STATS)
    torch.manual_seed(0)
    encoder = build_model(tiny_config(in_chans=3).model)
    result, model = run_segment(encoder, data, cfg, resolve_device("cpu"), "fp32", progress=False)
    first, last = result["history"]
    assert last["train_loss"] < 0.8 * first["train_loss"], result["history"]
    assert last["pixel_acc"] > first["pixel_acc"] or last["pixel_acc"] > 90
    weights = dict(model.encoder.named_parameters())["blocks.0.attn.qkv.weight"]
    assert torch.equal(weights, encoder.blocks[0].attn.qkv.weight)  # frozen


def test_the_floor_runs_from_the_command_line(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", num_train=4, num_val=2)
    out = tmp_path / "floor.json"
    assert main(["eval", "segment", "--random-init", "--preset", "small", "--data-dir", str(root), "--out", str(out),
                 "--epochs", "1", "--labels", "2", "--head", "linear", "crop_size=32", "batch_size=2"]) == 0
    record = json.loads(out.read_text())
    assert record["source"]["random_init"] and record["source"]["model"]["embed_dim"] == 192
    assert record["data"]["num_train"] == 2 and record["data"]["labels"] == 2
    assert record["result"]["recipe"]["head"] == "linear" and (tmp_path / "floor" / "checkpoints").is_dir()


def test_the_ade20k_recipe_at_a_tiny_size(tmp_path: Path) -> None:
    recipe = RECIPES["ade20k"]
    assert (recipe["crop_size"], recipe["iters"], recipe["batch_size"], recipe["lr"]) == (512, 160_000, 16, 1e-4)
    assert (recipe["layer_decay"], recipe["warmup_iters"], recipe["reduce_zero_label"]) == (0.65, 1500, True)
    root = write_ade(tmp_path / "ade", num_train=6, num_val=2)
    cfg = build_segment_config("ade20k", ["crop_size=32", "eval_stride=16", "batch_size=2", "iters=5",
                                          "warmup_iters=2", "num_workers=0", "decoder_channels=16"])
    assert cfg.num_classes == 150 and cfg.head == "upernet"
    data = load_segment_data(root, cfg, 3, *STATS)
    encoder = build_model(tiny_config(in_chans=3, depth=4).model)
    run = setup(encoder, data, cfg, resolve_device("cpu"), "fp32", D.DistInfo(), None, {})
    assert (run.steps_per_epoch, run.epochs) == (3, 2)  # 5 iterations rounded up to whole epochs
    lrs = []
    for step in range(run.total_steps):
        run.schedule.step_update(step)
        lrs.append(run.optimizer.param_groups[-1]["lr"])
    assert lrs[0] < 1e-9 and lrs[2] == max(lrs) and lrs[-1] < lrs[2]  # warm-up, then poly decay
    scales = sorted({g["lr_scale"] for g in run.optimizer.param_groups})
    assert scales[0] == 0.65 ** 5 and scales[-1] == 1.0  # stem, 4 blocks, head
    images, labels = next(run.start_epoch(0, 0))
    assert images.shape == (2, 3, 32, 32) and set(labels.unique().tolist()) <= {0, 1, 2, 255}  # reduced labels


def test_iters_below_one_pass_train_a_partial_pass(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", num_train=6, num_val=2)
    cfg = build_segment_config("ade20k", ["crop_size=32", "eval_stride=16", "batch_size=2", "iters=2",
                                          "warmup_iters=0", "num_workers=0", "decoder_channels=16"])
    data = load_segment_data(root, cfg, 3, *STATS)
    run = setup(build_model(tiny_config(in_chans=3, depth=4).model), data, cfg, resolve_device("cpu"), "fp32",
                D.DistInfo(), None, {})
    assert (len(run.loader), run.steps_per_epoch, run.epochs, run.total_steps) == (3, 2, 1, 2)
