"""Data and encoders for the detection tests: scenes in COCO's layout and a tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hpm.data.scenes import SceneOptions, write_scenes
from tests.conftest import HAVE_FASHION_MNIST
from tests.eval.conftest import save_random_run, tiny_config


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training and 8 validation scenes of 64 px with COCO instance files (``hpm data scenes``)."""
    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = tmp_path_factory.mktemp("detscenes") / "scenes"
    write_scenes(out, SceneOptions(num_train=16, num_val=8, size=64, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with one checkpoint of a tiny (one 32-wide block, patch 4, 1 channel) random encoder."""
    return save_random_run(tmp_path_factory.mktemp("detrun") / "run", tiny_config())


def copy_scenes(src: Path, dst: Path) -> Path:
    """A copy of a scenes folder that a test may damage."""
    shutil.copytree(src, dst)
    return dst


def edit_coco(json_file: Path, edit: Any) -> None:
    """Rewrite a COCO file after ``edit(raw)`` changed it in place."""
    raw = json.loads(json_file.read_text())
    edit(raw)
    json_file.write_text(json.dumps(raw))
