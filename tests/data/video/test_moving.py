"""hpm data moving: Moving Fashion-MNIST clips as lossless videos, labelled by motion and class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import load_fashion_mnist
from hpm.data.video import (
    MOTIONS,
    MovingOptions,
    VideoClipDataset,
    clip_rng,
    moving_clip,
    read_frames,
    write_moving,
)
from hpm.data.video.moving import bounce, item_side, scale_items
from hpm.errors import ConfigError
from tests.data.conftest import needs_fashion_mnist
from tests.data.video.conftest import needs_ffmpeg

SMALL = MovingOptions(num_train=8, num_val=8, frames=8, size=32, seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 8 validation clips of 8 frames at 32 px, seed 0."""
    if not (Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    out = tmp_path_factory.mktemp("moving") / "out"
    write_moving(out, SMALL, progress=False)
    return out


def test_bounce_stays_on_the_canvas_and_reflects() -> None:
    corners = bounce(np.array([[0.0, 5.0]]), np.array([[3.0, -2.0]]), num_frames=8, span=10)  # [1, 8, 2]
    assert corners[0, :, 0].tolist() == [0, 3, 6, 9, 8, 5, 2, 1]
    assert corners[0, :, 1].tolist() == [5, 3, 1, 1, 3, 5, 7, 9]


def test_a_clip_moves_its_first_item_in_its_motion_direction() -> None:
    item = np.zeros((1, 6, 6), dtype=np.uint8)
    item[0, 2:4, 2:4] = 255  # a bright square at offsets 2..3 of the item
    checked = 0
    for seed in range(60):
        clip = moving_clip(np.random.default_rng(seed), item, np.array([3]), num_frames=6, size=64)
        assert clip.frames.shape == (6, 64, 64) and clip.classes[0] == 3
        bright = [np.argwhere(frame > 0) for frame in clip.frames]  # [n, 2] (y, x) each
        # One item, and far enough from the edges in every frame that it did not bounce.
        if len(clip.classes) > 1 or min(b.min() for b in bright) < 6 or max(b.max() for b in bright) > 57:
            continue
        dy, dx = bright[-1].mean(axis=0) - bright[0].mean(axis=0)
        angle = np.arctan2(-dy, dx) % (2 * np.pi)  # north is -y
        assert round(angle / (np.pi / 4)) % 8 == clip.motion
        checked += 1
    assert checked >= 5


@needs_ffmpeg
@needs_fashion_mnist
def test_same_seed_same_clips_other_seed_differs(moving: Path, tmp_path: Path) -> None:
    write_moving(tmp_path / "again", SMALL, progress=False)
    assert _files(tmp_path / "again") == _files(moving)
    other = MovingOptions(num_train=8, num_val=8, frames=8, size=32, seed=1)
    write_moving(tmp_path / "other", other, progress=False)
    assert (tmp_path / "other" / "train.json").read_text() != (moving / "train.json").read_text()


@needs_ffmpeg
@needs_fashion_mnist
def test_decoding_a_written_clip_gives_its_frames_exactly(moving: Path) -> None:
    images, labels = load_fashion_mnist(FASHION_MNIST_ROOT, "test")
    items = scale_items(images, item_side(SMALL.size))
    listing = json.loads((moving / "val.json").read_text())
    for index, entry in enumerate(listing["clips"]):
        clip = moving_clip(clip_rng(0, "val", index), items, labels, SMALL.frames, SMALL.size)
        decoded = read_frames(moving / entry["file"], np.arange(SMALL.frames), channels=1)  # [T, 1, S, S]
        assert torch.equal(decoded[:, 0], torch.from_numpy(clip.frames))
        assert entry["class"] == clip.classes[0] == int(labels[clip.sources[0]])


@needs_ffmpeg
@needs_fashion_mnist
def test_json_labels_agree_with_the_folders(moving: Path) -> None:
    for split in ("train", "val"):
        listing = json.loads((moving / f"{split}.json").read_text())
        assert listing["motions"] == list(MOTIONS) and len(listing["clips"]) == 8
        on_disk = {str(p.relative_to(moving)) for p in (moving / split).rglob("*.mkv")}
        assert on_disk == {entry["file"] for entry in listing["clips"]}
        for entry in listing["clips"]:
            assert Path(entry["file"]).parent.name == MOTIONS[entry["motion"]] == entry["motion_name"]
            assert entry["class"] == entry["classes"][0] and 1 <= len(entry["classes"]) <= 2
        data = VideoClipDataset(moving, split, num_frames=8, stride=1, size=32)
        by_file = {entry["file"]: entry["motion_name"] for entry in listing["clips"]}
        for (path, label) in data.samples:
            assert data.classes[label] == by_file[str(Path(path).relative_to(moving))]


@needs_ffmpeg
@needs_fashion_mnist
def test_non_empty_out_is_refused_unless_overwrite(moving: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_moving(out, MovingOptions(num_train=3, num_val=1, frames=4), progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        write_moving(out, SMALL, progress=False)
    (out / "notes.txt").write_text("kept")
    write_moving(out, MovingOptions(num_train=2, num_val=0, frames=4), overwrite=True, progress=False)
    assert len(list((out / "train").rglob("*.mkv"))) == 2 and not (out / "val").exists()
    assert (out / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "kwargs", [{"num_train": -1}, {"num_train": 0, "num_val": 0}, {"size": 8}, {"frames": 1}, {"seed": -1}]
)
def test_bad_options_are_config_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        MovingOptions(**kwargs)


@needs_ffmpeg
@needs_fashion_mnist
def test_cli_writes_the_layout_and_refuses_a_non_empty_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpm.cli import main

    out = tmp_path / "moving"
    args = ["data", "moving", str(out), "--num-train", "8", "--num-val", "3", "--frames", "8", "--seed", "2"]
    assert main(args) == 0
    assert "train 8 clips, val 3 clips" in capsys.readouterr().out
    for split, count in (("train", 8), ("val", 3)):
        assert len(list((out / split).rglob("*.mkv"))) == count
        assert len(json.loads((out / f"{split}.json").read_text())["clips"]) == count
        assert {p.name for p in (out / split).iterdir()} == set(MOTIONS)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert main([*args, "--overwrite"]) == 0
