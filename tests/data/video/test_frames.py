"""Videos as folders of frames: reading only the frames a clip needs, in name order, through the
clip data set, pre-training and the evaluation views; frames of two sizes named and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpm.config import DataConfig
from hpm.data.augmented import collate_skip_none
from hpm.data.folder import Unreadable
from hpm.data.video import (
    FrameFolder,
    UnreadableVideo,
    VideoClipDataset,
    is_video_dir,
    open_video_clips,
    read_clip,
    read_frames,
    video_length,
    write_video,
)
from hpm.data.video.frames import frame_order
from hpm.eval.video.views import ClipViews
from tests.data.video.conftest import index_frames, needs_ffmpeg


def write_frames(folder: Path, frames: torch.Tensor, name: str = "{:06d}.png") -> Path:
    """Write uint8 ``[T, C, H, W]`` frames (C 1 or 3) as lossless images ``folder/<name>``, from 1."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):  # [C, H, W]
        array = frame.permute(1, 2, 0).numpy()  # [H, W, C]
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(folder / name.format(t + 1))
    return folder


def random_frames(num_frames: int, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 ``[T, C, size, size]`` noise."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (num_frames, channels, size, size), dtype=np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_a_frame_folder_reads_as_its_frames(tmp_path: Path, channels: int) -> None:
    frames = random_frames(7, channels, seed=channels)
    folder = write_frames(tmp_path / "video", frames)
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"not a frame either")
    assert video_length(folder) == 7
    assert torch.equal(read_frames(folder, np.arange(7), channels), frames)
    assert torch.equal(read_frames(folder, np.array([5, 0, 5]), channels), frames[[5, 0, 5]])


def test_rgb_frames_read_as_grey_give_pil_luma(tmp_path: Path) -> None:
    frames = random_frames(2, 3)
    folder = write_frames(tmp_path / "video", frames)
    expected = [torch.from_numpy(np.array(Image.open(folder / f"{t:06d}.png").convert("L"))) for t in (1, 2)]
    assert torch.equal(read_frames(folder, np.arange(2), channels=1)[:, 0], torch.stack(expected))


def test_frames_are_in_name_order_with_numbers_compared_as_numbers(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "video", index_frames(12, step=20), name="img_{}.jpg")  # img_1 .. img_12
    assert FrameFolder(folder).names[:3] == ["img_1.jpg", "img_2.jpg", "img_3.jpg"]
    assert sorted(["f10.png", "f9.png", "f1.png"], key=frame_order) == ["f1.png", "f9.png", "f10.png"]
    grey = read_frames(folder, np.arange(12), channels=1)[:, 0, 8, 8].to(torch.int64)  # JPEG: near 20 t
    assert (grey - 20 * torch.arange(12)).abs().max() <= 2


def test_a_clip_decodes_only_its_frames(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "video", index_frames(10, step=10))
    (folder / "000002.png").write_bytes(b"a broken frame")  # frame index 1
    clip = read_clip(folder, num_frames=3, stride=4, channels=1)  # centre start 0: frames 0, 4, 8
    assert clip[:, 0, 0, 0].tolist() == [0, 40, 80]
    with pytest.raises(UnreadableVideo, match="000002.png"):
        read_frames(folder, np.array([0, 1]), channels=1)


def test_a_short_frame_folder_repeats_its_last_frame(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "video", index_frames(5, step=10))
    clip = read_clip(folder, num_frames=4, stride=2, rng=np.random.default_rng(0), channels=1)
    assert clip[:, 0, 0, 0].tolist() == [0, 20, 40, 40]


def test_frames_of_two_sizes_are_named(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "video", index_frames(4, size=16))
    write_frames(folder, index_frames(1, size=12), name="000009.png")  # a fifth frame, 12 x 12
    assert torch.equal(read_frames(folder, np.arange(4), 1), index_frames(4, size=16))  # the four 16 px frames
    with pytest.raises(UnreadableVideo, match=r"video mixes frame sizes: 000001.png is 16x16, 000009.png is 12x12"):
        read_frames(folder, np.array([0, 4]), 1)


def _frame_clips(root: Path) -> Path:
    """``root/train/{a,b}/`` with frame folders (and a few files that are no videos)."""
    for split in ("train", "val"):
        write_frames(root / split / "a" / "clip0", index_frames(8, step=10, channels=3))
        write_frames(root / split / "b" / "clip0", index_frames(8, step=20, channels=3))
        write_frames(root / split / "b" / "clip1", index_frames(6, step=30, channels=3))
        (root / split / "b" / "readme.txt").write_text("not a video")
    return root


def test_a_folder_of_frame_folders_is_video_data(tmp_path: Path) -> None:
    root = _frame_clips(tmp_path / "frames")
    assert is_video_dir(root)
    data = VideoClipDataset(root, "train", num_frames=4, stride=2, size=16)
    assert data.classes == ["a", "b"] and data.labels.tolist() == [0, 1, 1]
    assert [Path(path).name for path, _ in data.samples] == ["clip0", "clip0", "clip1"]
    clip, label = VideoClipDataset(root, "val", num_frames=4, stride=2, size=16)[2]  # frame t holds 30 t
    assert clip.shape == (3, 4, 16, 16) and label == 1
    assert torch.allclose(clip[0, :, 0, 0] * 255, torch.tensor([0.0, 60.0, 120.0, 150.0]))  # 6 frames: last repeats


def test_a_flat_folder_of_frame_folders_reads_as_flat_video_data(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_frames(root / "clip0", index_frames(4, step=10))
    write_frames(root / "more" / "clip1", index_frames(4, step=20))
    assert not is_video_dir(root)  # without train/<class>/, images below DIR are image data
    data = VideoClipDataset(root, "train", num_frames=2, stride=1, size=16, layout="flat")
    assert [Path(path).relative_to(root).as_posix() for path, _ in data.samples] == ["clip0", "more/clip1"]
    assert data.num_classes == 0


def test_images_directly_in_class_folders_are_image_data(tmp_path: Path) -> None:
    write_frames(tmp_path / "images" / "train" / "cat", index_frames(2, channels=3))
    assert not is_video_dir(tmp_path / "images")


@needs_ffmpeg
def test_frame_folders_and_video_files_mix(tmp_path: Path) -> None:
    root = _frame_clips(tmp_path / "frames")
    write_video(root / "train" / "a" / "clip9.mkv", index_frames(8, step=10, channels=3))  # clip0's frames
    data = VideoClipDataset(root, "train", num_frames=4, stride=2, size=16, train=False)
    assert [Path(path).name for path, _ in data.samples] == ["clip0", "clip9.mkv", "clip0", "clip1"]
    assert torch.equal(data[0][0], data[1][0])


def test_a_frame_folder_of_two_sizes_is_skipped_and_named(tmp_path: Path) -> None:
    root = _frame_clips(tmp_path / "frames")
    bad = root / "train" / "b" / "clip1"
    write_frames(bad, index_frames(1, size=8, channels=3), name="000004.png")  # frame 3 is 8 px
    data = VideoClipDataset(root, "train", num_frames=4, stride=1, size=16, train=False)  # centre: frames 1..4
    assert data[2] == Unreadable(str(bad))
    batch, labels, skipped = collate_skip_none([data[i] for i in range(len(data))])
    assert batch.shape == (2, 3, 4, 16, 16) and labels.tolist() == [0, 1] and skipped == [str(bad)]


def test_pretraining_reads_frame_folders(tmp_path: Path) -> None:
    root = _frame_clips(tmp_path / "frames")
    cfg = DataConfig.model_validate({"dataset": "folder", "data_dir": str(root), "frame_stride": 2})
    clips = open_video_clips(cfg, img_size=16, num_frames=4, channels=1, mean=(0.5,), std=(0.5,))
    clip, label = clips[(1, 3)]
    assert clip.shape == (1, 4, 16, 16) and label == 1


@needs_ffmpeg
def test_the_evaluation_views_of_a_frame_folder_are_those_of_its_video_file(tmp_path: Path) -> None:
    frames = random_frames(9, 3, size=24)
    write_video(tmp_path / "clip.mkv", frames)
    folder = write_frames(tmp_path / "clip", frames)
    views = ClipViews([str(tmp_path / "clip.mkv"), str(folder)], np.zeros(2, dtype=np.int64), 4, 2, 16, 3,
                      (0.5,) * 3, (0.5,) * 3, test_clips=2, test_crops=1)
    assert torch.equal(views[0][0], views[1][0])  # [2, 3, 4, 16, 16] each
