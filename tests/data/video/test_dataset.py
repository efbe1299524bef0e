"""The clip folder data set: VideoMAE's sampling, one crop and flip per clip, unreadable clips skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpm.data.augmented import collate_skip_none
from hpm.data.folder import Unreadable
from hpm.data.video import VideoClipDataset, build_clip_transform, write_video
from hpm.errors import DataError
from tests.data.video.conftest import index_frames, needs_ffmpeg

pytestmark = needs_ffmpeg


def _ramp_frames(num_frames: int, size: int = 32) -> torch.Tensor:
    """uint8 ``[T, 3, size, size]``: one textured image plus 4 t in frame t."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = torch.stack([60 + 2 * x, 60 + 2 * y, 60 + x + y]).to(torch.int64)  # [3, S, S], 60..186
    shift = 4 * torch.arange(num_frames).view(-1, 1, 1, 1)  # [T, 1, 1, 1]
    return (base.unsqueeze(0) + shift).to(torch.uint8)  # [T, 3, S, S]


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """``root/{train,val}/{left,right}/`` with 16-frame clips, and a text file to ignore."""
    root = tmp_path / "clips"
    for split in ("train", "val"):
        for label, name in enumerate(("left", "right")):
            folder = root / split / name
            folder.mkdir(parents=True)
            frames = _ramp_frames(16) if label == 0 else index_frames(16, 32, 3, 10)
            write_video(folder / f"{name}0.mkv", frames)
        (root / split / "left" / "notes.txt").write_text("not a video")
    return root


def test_the_folders_are_the_classes(clips: Path) -> None:
    data = VideoClipDataset(clips, "train", num_frames=4, stride=2, size=16)
    assert data.classes == ["left", "right"] and data.num_classes == 2
    assert data.labels.tolist() == [0, 1] and data.train
    assert not VideoClipDataset(clips, "val").train


def test_a_clip_is_float_c_t_h_w_of_t_frames_at_the_stride(clips: Path) -> None:
    data = VideoClipDataset(clips, "val", num_frames=4, stride=3, size=32)
    clip, label = data[1]  # frame t holds 10 t everywhere
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32 and label == 1
    start = (16 - 10) // 2
    expected = torch.tensor([10 * (start + 3 * k) for k in range(4)], dtype=torch.float32) / 255
    assert torch.allclose(clip[0, :, 0, 0], expected)
    assert torch.allclose(clip.amin(dim=(0, 2, 3)), clip.amax(dim=(0, 2, 3)))


def test_one_crop_and_flip_for_the_whole_clip(clips: Path) -> None:
    data = VideoClipDataset(clips, "train", num_frames=8, stride=1, size=16, crop_scale=(0.1, 0.5))
    for seed in range(6):
        clip, _ = data[(0, seed)]  # [3, 8, 16, 16]; frame t is frame 0 plus 4 t
        steps = (clip - clip[:, :1]) * 255  # [3, 8, 16, 16]
        per_frame = steps[0, :, 0, 0].view(1, -1, 1, 1)  # [1, 8, 1, 1]
        assert torch.allclose(steps, per_frame.expand_as(steps), atol=1e-3)
        assert torch.allclose(per_frame.diff(dim=1), torch.full((1, 7, 1, 1), 4.0), atol=1e-3)


def test_a_seeded_key_repeats_its_clip(clips: Path) -> None:
    data = VideoClipDataset(clips, "train", num_frames=4, stride=2, size=16)
    first, again = data[(0, 7)][0], data[(0, 7)][0]
    assert torch.equal(first, again)
    assert any(not torch.equal(first, data[(0, seed)][0]) for seed in range(8, 12))


def test_an_unreadable_clip_is_skipped_and_named(clips: Path) -> None:
    bad = clips / "train" / "right" / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    data = VideoClipDataset(clips, "train", num_frames=4, stride=2, size=16)
    index = [path for path, _ in data.samples].index(str(bad))
    assert data[index] == Unreadable(str(bad))
    clips_batch, labels, skipped = collate_skip_none([data[i] for i in range(len(data))])
    assert clips_batch.shape == (2, 3, 4, 16, 16) and skipped == [str(bad)] and labels.tolist() == [0, 1]


def test_normalisation_and_greyscale(clips: Path) -> None:
    data = VideoClipDataset(clips, "val", num_frames=2, stride=1, size=8, channels=1, mean=(0.5,), std=(0.5,))
    clip, _ = data[1]  # frames 7 and 8 hold 70 and 80
    assert clip.shape == (1, 2, 8, 8)
    assert torch.allclose(clip[0, :, 0, 0], (torch.tensor([70.0, 80.0]) / 255 - 0.5) / 0.5)


def test_missing_or_empty_folders_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        VideoClipDataset(tmp_path, "train")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no video files"):
        VideoClipDataset(tmp_path, "train")


def test_eval_transform_resizes_and_centre_crops() -> None:
    frames = index_frames(3, size=20, channels=3)  # [3, 3, 20, 20]
    clip = build_clip_transform(10, train=False)(frames)
    assert clip.shape == (3, 3, 10, 10)
