"""Checkpoints for the evaluation tests: a randomly initialised one (fast) and a tiny pre-trained one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.config import Config, build_config, config_to_dict
from hpm.engine.checkpoint import save_checkpoint
from hpm.engine.ema import build_teacher
from hpm.models import build_model

TINY_MODEL: dict[str, Any] = {
    "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
    "decoder_depth": 1, "decoder_num_heads": 2,
}


def tiny_config(**model: Any) -> Config:
    """The small preset shrunk to one 32-wide block, 1 channel (Fashion-MNIST)."""
    return build_config(overrides={"model": {**TINY_MODEL, "in_chans": 1, **model}})


def save_random_run(run_dir: Path, cfg: Config, seed: int = 0, step: int = 7, teacher: bool = True) -> Path:
    """Write a run directory whose only checkpoint holds a randomly initialised model."""
    torch.manual_seed(seed)
    model = build_model(cfg.model, loss_predictor=cfg.loss.predictor != "none")
    state = {"config": config_to_dict(cfg), "epoch": 0}
    save_checkpoint(run_dir, step, model, build_teacher(model) if teacher else None, state)
    return run_dir


@pytest.fixture
def random_run(tmp_path: Path) -> Path:
    """A run directory with one checkpoint of a tiny, randomly initialised model."""
    return save_random_run(tmp_path / "run", tiny_config())


def write_image_folder(root: Path, classes: dict[str, int], split: str = "train", size: int = 20, seed: int = 0) -> Path:
    """PNG files ``root/split/<class>/i.png``; class c is a bright square at a class-specific place."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(classes.items()):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
            y, x = (c * 7) % (size - 6), (c * 11) % (size - 6)
            img[y : y + 6, x : x + 6] = 250
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HPM run (one 32-wide block) pre-trained for 8 steps on 128 Fashion-MNIST images."""
    from hpm.pretrain import run_pretrain
    from tests.conftest import HAVE_FASHION_MNIST, tiny_overrides

    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("pretrained")
    overrides = tiny_overrides(root, model=TINY_MODEL, data={"subset": 128}, train={"epochs": 2, "batch_size": 32})
    summary = run_pretrain(build_config(overrides=overrides))
    return summary.run_dir
