"""VideoMAE's test views: temporal clips evenly spread, crops along the long side, and the
features of several views as the mean of each view's own features."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from hpm.data.video import build_clip_transform, clip_indices, read_frames, video_length, write_video
from hpm.eval.encoder import load_encoder
from hpm.eval.video import ClipViews, VideoOptions, build_video_eval_data, clip_features, clip_starts, crop_offsets
from tests.data.video.conftest import needs_ffmpeg
from tests.eval.video.conftest import video_config


def test_clips_spread_from_the_first_to_the_last_start_and_one_clip_is_the_centre() -> None:
    assert clip_starts(12, 8, 1, 2) == [0, 4]
    assert clip_starts(12, 8, 1, 1) == [2]  # the centre, as an evaluation clip
    assert clip_starts(30, 4, 2, 5) == [0, 5, 11, 17, 23]  # last start 30 - 7 = 23, VideoMAE's int(i * step)
    assert clip_starts(6, 8, 1, 3) == [0, 0, 0]  # a clip longer than the video: one start
    assert crop_offsets(40, 32, 3) == [0, 4, 8] and crop_offsets(40, 32, 1) == [4]
    assert crop_offsets(32, 32, 3) == [0, 0, 0]


def _single_view(model: torch.nn.Module, path: str, start: int) -> torch.Tensor:
    """The class token of one clip from ``start``, decoded and transformed on its own: [D]."""
    frames = read_frames(path, clip_indices(video_length(path), 8, 1, start), 1)  # [8, 1, 16, 16]
    clip = build_clip_transform(16, train=False, mean=(0.5,), std=(0.5,))(frames)  # [1, 8, 16, 16]
    with torch.no_grad():
        return model.forward_encoder(clip[None])[0, 0]


def test_two_clips_average_the_features_of_each_clip(clips: Path, video_run: Path) -> None:
    enc = load_encoder(video_run)
    feats = {}
    for n in (1, 2):
        data = build_video_eval_data(enc.cfg, None, VideoOptions(test_clips=n), seed=0)
        feats[n] = clip_features(enc.model, data, "cls", batch_size=4)[2]  # test split [16, D]
    files = data.test.files
    assert feats[2].shape == (len(files), 32)
    assert not torch.allclose(feats[1], feats[2], atol=1e-3)
    for i in (0, 5, len(files) - 1):
        first, last = _single_view(enc.model, files[i], 0), _single_view(enc.model, files[i], 4)  # 12 frames, clips of 8
        assert torch.allclose(feats[2][i], (first + last) / 2, atol=1e-5)
        assert torch.allclose(feats[1][i], _single_view(enc.model, files[i], 2), atol=1e-5)


@needs_ffmpeg
def test_three_crops_lie_left_centre_and_right_of_a_wide_video(tmp_path: Path) -> None:
    columns = (torch.arange(24) * 10).to(torch.uint8)  # [24] every column its own value
    frames = columns.view(1, 1, 1, 24).expand(4, 1, 16, 24).contiguous()  # [T, C, H, W], 16 x 24
    write_video(tmp_path / "wide.mkv", frames)
    views = ClipViews([str(tmp_path / "wide.mkv")], np.zeros(1), num_frames=4, stride=1, size=16, channels=1,
                      mean=(0.0,), std=(1.0,), test_clips=1, test_crops=3)[0][0]  # [3, 1, 4, 16, 16]
    first_columns = [round(float(v[0, 0, 0, 0]) * 255 / 10) for v in views]
    assert views.shape == (3, 1, 4, 16, 16) and first_columns == [0, 4, 8]


def test_square_videos_and_videos_no_longer_than_a_clip_say_that_their_views_coincide(
    clips: Path, video_run: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_encoder(video_run).cfg
    monkeypatch.setattr(logging.getLogger("hpm"), "handlers", [caplog.handler])  # a CLI run stops propagation
    with caplog.at_level(logging.WARNING):
        data = build_video_eval_data(cfg, None, VideoOptions(test_clips=1, test_crops=3), test_subset=2)
        build_video_eval_data(video_config(clips, num_frames=12), None, VideoOptions(test_clips=2), test_subset=2)
    said = caplog.text
    assert "the videos are square (16 px): the 3 spatial crops coincide" in said
    assert "the videos are no longer than a clip (12 frames): the 2 temporal clips coincide" in said
    views = data.views(data.test)[0][0]  # [3, 1, 8, 16, 16]
    assert data.describe_views()["crops_coincide"] and torch.equal(views[0], views[2])
