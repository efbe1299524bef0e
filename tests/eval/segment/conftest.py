"""Data and encoders for the segmentation tests: scenes in ADE20K's layout and a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpm.data.scenes import SceneOptions, write_scenes
from tests.conftest import HAVE_FASHION_MNIST
from tests.eval.conftest import save_random_run, tiny_config


def copy_scenes(src: Path, dst: Path) -> Path:
    """A copy of a scenes folder that a test may damage."""
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training and 8 validation scenes of 32 px (``hpm data scenes``)."""
    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    write_scenes(out, SceneOptions(num_train=24, num_val=8, size=32, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with one checkpoint of a tiny (one 32-wide block, 1 channel) random encoder."""
    return save_random_run(tmp_path_factory.mktemp("segrun") / "run", tiny_config())


def write_ade(root: Path, num_train: int = 8, num_val: int = 4, size: int = 32, seed: int = 0) -> Path:
    """A small data set in ADE20K's layout: noise with a bright square per image, labelled
    ``1 + i % 3`` on background 0 (index PNGs, mode L)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("training", num_train), ("validation", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), dtype=np.uint8)
            y, x, side = *rng.integers(0, size // 2, size=2), size // 2
            cls = 1 + i % 3
            image[y:y + side, x:x + side, cls - 1] = 250
            label[y:y + side, x:x + side] = cls
            Image.fromarray(image).save(root / "images" / split / f"{i:06d}.png")
            Image.fromarray(label, mode="L").save(root / "annotations" / split / f"{i:06d}.png")
    return root
