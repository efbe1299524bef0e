"""Lossless writing and seeking reads of video files, and VideoMAE's clip sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.data.video import UnreadableVideo, read_clip, read_frames, video_length, write_video
from hpm.data.video.sampling import clip_indices, clip_span, clip_start
from hpm.errors import ConfigError, DataError
from tests.data.video.conftest import index_frames, needs_ffmpeg


def test_clip_indices_take_a_stride_and_repeat_the_last_frame_of_a_short_video() -> None:
    assert clip_span(16, 4) == 61
    assert clip_indices(100, 4, 3, start=5).tolist() == [5, 8, 11, 14]
    assert clip_indices(6, 4, 2, start=0).tolist() == [0, 2, 4, 5]


def test_clip_start_is_the_centre_without_a_generator_and_fits_with_one() -> None:
    assert clip_start(20, 4, 2, rng=None) == (20 - 7) // 2
    starts = {clip_start(20, 4, 2, np.random.default_rng(seed)) for seed in range(200)}
    assert starts == set(range(20 - 7 + 1))
    assert clip_start(3, 4, 2, np.random.default_rng(0)) == 0


def test_bad_clip_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        clip_span(0, 2)
    with pytest.raises(ConfigError):
        clip_indices(0, 4, 2, start=0)


@needs_ffmpeg
@pytest.mark.parametrize("channels", [1, 3])
def test_a_written_video_decodes_to_its_frames_exactly(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    frames = torch.from_numpy(rng.integers(0, 256, (8, channels, 32, 32), dtype=np.uint8))
    path = tmp_path / "clip.mkv"
    write_video(path, frames)
    assert video_length(path) == 8
    assert torch.equal(read_frames(path, np.arange(8), channels=channels), frames)
    assert torch.equal(read_frames(path, np.array([6, 1]), channels=channels), frames[[6, 1]])


@needs_ffmpeg
def test_grey_frames_read_as_rgb_repeat_the_grey(tmp_path: Path) -> None:
    frames = index_frames(4, channels=1, step=60)  # values 0, 60, 120, 180
    write_video(tmp_path / "grey.mkv", frames)
    rgb = read_frames(tmp_path / "grey.mkv", np.arange(4), channels=3)  # [4, 3, 16, 16]
    assert torch.equal(rgb, frames.expand(-1, 3, -1, -1))


@needs_ffmpeg
def test_read_clip_takes_t_frames_at_the_stride(tmp_path: Path) -> None:
    write_video(tmp_path / "count.mkv", index_frames(20, step=10))  # frame t holds 10 t
    centre = read_clip(tmp_path / "count.mkv", num_frames=4, stride=3, rng=None, channels=1)  # [4, 1, 16, 16]
    start = (20 - 10) // 2
    assert centre[:, 0, 0, 0].tolist() == [10 * (start + 3 * k) for k in range(4)]
    rng = np.random.default_rng(1)
    random = read_clip(tmp_path / "count.mkv", num_frames=4, stride=3, rng=rng, channels=1)
    first = int(random[0, 0, 0, 0]) // 10
    assert random[:, 0, 0, 0].tolist() == [10 * (first + 3 * k) for k in range(4)]


@needs_ffmpeg
@pytest.mark.parametrize("content", [b"not a video", None])
def test_an_unreadable_file_raises_a_named_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnreadableVideo, match="bad.mp4"):
        read_clip(path, num_frames=4, stride=2)


def test_write_video_refuses_other_than_uint8_frames(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="uint8"):
        write_video(tmp_path / "x.mkv", torch.zeros(4, 2, 8, 8, dtype=torch.uint8))
