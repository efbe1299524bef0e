"""Lossless writing and seeking reads of video files, lossy mp4 files, every bad file named without a
hang, and VideoMAE's clip sampling."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.data.video import UnreadableVideo, VideoClipDataset, read_clip, read_frames, video_length, write_video
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


def _raises_unreadable_within(seconds: float, read: Callable[[], object]) -> UnreadableVideo:
    """The UnreadableVideo that ``read`` raises, failing the test if it has not returned after ``seconds``."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(read())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"reading did not return within {seconds} s"
    assert isinstance(outcome[0], UnreadableVideo), f"expected UnreadableVideo, got {outcome[0]!r}"
    return outcome[0]


@needs_ffmpeg
@pytest.mark.parametrize("content", [b"not a video", b"", None])
def test_an_unreadable_file_raises_a_named_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    error = _raises_unreadable_within(60, lambda: read_clip(path, num_frames=4, stride=2))
    assert "bad.mp4" in str(error)


@needs_ffmpeg
def test_an_audio_only_file_is_named(tmp_path: Path) -> None:
    from torchcodec.encoders import AudioEncoder

    path = tmp_path / "sound.mkv"
    AudioEncoder(torch.zeros(1, 8000), sample_rate=8000).to_file(str(path))
    error = _raises_unreadable_within(60, lambda: read_clip(path, num_frames=4, stride=2))
    assert "sound.mkv" in str(error) and "no video stream" in str(error)


@needs_ffmpeg
def test_a_codec_ffmpeg_does_not_know_is_named(tmp_path: Path) -> None:
    write_video(tmp_path / "ffv1.mkv", index_frames(4))
    data = (tmp_path / "ffv1.mkv").read_bytes()
    assert data.count(b"FFV1") == 1  # the codec's FourCC in the Matroska track header
    path = tmp_path / "unknown.mkv"
    path.write_bytes(data.replace(b"FFV1", b"QQQQ"))  # the container intact, a codec no FFmpeg has
    error = _raises_unreadable_within(60, lambda: read_clip(path, num_frames=4, stride=2))
    assert "unknown.mkv" in str(error) and "codec" in str(error)


def _write_mp4(path: Path, frames: torch.Tensor) -> None:
    """Encode frames ``[T, 3, H, W]`` as an mp4 with H.264, or MPEG-4 part 2 where libx264 is missing."""
    from torchcodec.encoders import VideoEncoder

    for codec in ("libx264", "mpeg4"):
        try:
            VideoEncoder(frames, frame_rate=8).to_file(str(path), codec=codec, pixel_format="yuv420p")
            return
        except RuntimeError:
            continue
    pytest.fail("this FFmpeg encodes neither H.264 (libx264) nor MPEG-4 part 2")


@needs_ffmpeg
def test_an_mp4_decodes_through_the_data_set(tmp_path: Path) -> None:
    frames = index_frames(12, size=32, channels=3, step=20)  # frame t is grey 20 t
    (tmp_path / "train" / "a").mkdir(parents=True)
    _write_mp4(tmp_path / "train" / "a" / "clip.mp4", frames)
    assert video_length(tmp_path / "train" / "a" / "clip.mp4") == 12
    data = VideoClipDataset(tmp_path, "train", num_frames=4, stride=3, size=32, train=False)
    clip, _ = data[0]  # [3, 4, 32, 32], centre start (12 - 10) // 2 = 1: frames 1, 4, 7, 10
    expected = torch.tensor([20.0 * t for t in (1, 4, 7, 10)]).view(1, 4, 1, 1).expand_as(clip)
    assert (clip * 255 - expected).abs().max() <= 4  # lossy: yuv420p and the codec's rounding


@needs_ffmpeg
def test_an_mp4_with_a_corrupt_payload_is_named(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    _write_mp4(path, torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)))
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 4 + 64, data.find(b"moov")  # keep the headers, scramble the frames
    assert 0 < start < end
    data[start:end] = np.random.default_rng(1).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    error = _raises_unreadable_within(60, lambda: read_frames(path, np.arange(8)))
    assert "noise.mp4" in str(error)


@needs_ffmpeg
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_refused_without_waiting_on_it(tmp_path: Path) -> None:
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    error = _raises_unreadable_within(10, lambda: video_length(path))
    assert "pipe.mp4" in str(error) and "not a regular file" in str(error)


@needs_ffmpeg
def test_a_video_shorter_than_the_clip_repeats_its_last_frame(tmp_path: Path) -> None:
    write_video(tmp_path / "short.mkv", index_frames(5, step=10))
    clip = read_clip(tmp_path / "short.mkv", num_frames=4, stride=3, rng=np.random.default_rng(0), channels=1)
    assert clip[:, 0, 0, 0].tolist() == [0, 30, 40, 40]


def test_write_video_refuses_other_than_uint8_frames(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="uint8"):
        write_video(tmp_path / "x.mkv", torch.zeros(4, 2, 8, 8, dtype=torch.uint8))
