"""Tiny Moving Fashion-MNIST clips and a tiny video run for the clip-level evaluation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpm.config import Config, build_config
from hpm.data.video import MovingOptions, write_moving
from tests.eval.conftest import save_random_run

NUM_TRAIN, NUM_VAL, FRAMES, SIZE = 32, 16, 12, 16


def video_config(root: Path | None, **model: Any) -> Config:
    """A tiny video model: 8 frames of 16 px in tubelets of 2 x 4 x 4 (4 x 4 x 4 = 64 tokens), 32 wide, 2 blocks."""
    return build_config(overrides={
        "model": {"preset": "video_small", "num_frames": 8, "tubelet_size": 2, "img_size": SIZE, "patch_size": 4,
                  "embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1,
                  "decoder_num_heads": 2, "in_chans": 1, **model},
        "data": {"data_dir": None if root is None else str(root), "channels": 1, "frame_stride": 1},
        "loss": {"predictor": "none"}, "mask": {"strategy": "tube", "ratio": 0.75},
    })


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 train / 16 val clips of 12 frames at 16 px: DIR/{train,val}/<motion>/ and DIR/{train,val}.json."""
    from tests.conftest import HAVE_FASHION_MNIST
    from tests.data.video.conftest import HAVE_FFMPEG

    if not (HAVE_FASHION_MNIST and HAVE_FFMPEG):
        pytest.skip("needs Fashion-MNIST (dataset-fashion-mnist) and FFmpeg")
    out = tmp_path_factory.mktemp("moving") / "data"
    write_moving(out, MovingOptions(num_train=NUM_TRAIN, num_val=NUM_VAL, frames=FRAMES, size=SIZE), progress=False)
    return out


@pytest.fixture(scope="session")
def video_run(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose checkpoint holds a randomly initialised tiny video model trained on ``clips``."""
    return save_random_run(tmp_path_factory.mktemp("vrun") / "run", video_config(clips), teacher=False)
