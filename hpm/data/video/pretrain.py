"""Pre-training clips from a folder of videos (files or frame folders), as ``hpm pretrain`` reads them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from hpm.config import DataConfig
from hpm.data.probe import probe_spread
from hpm.data.video.dataset import VideoClipDataset, video_layout
from hpm.data.video.decode import UnreadableVideo
from hpm.data.video.read import video_length
from hpm.errors import DataError


class KeyedSubset(Dataset):
    """The samples ``indices`` of a data set indexed by ``(index, sample_seed)`` keys (as
    ``GlobalBatchSampler`` yields); the seed passes through unchanged."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> object:
        if isinstance(key, (tuple, list)):
            return self.base[(self.indices[int(key[0])], int(key[1]))]
        return self.base[self.indices[int(key)]]


def check_videos_readable(dataset: VideoClipDataset, max_files: int = 16) -> None:
    """Open up to ``max_files`` videos (files or frame folders) spread over the data set; a few
    unreadable ones are skipped in training, none readable is an error.

    Raises:
        DataError: None of the files checked could be opened.
    """
    def open_one(index: int) -> str | None:
        try:
            video_length(dataset.samples[index][0])
        except UnreadableVideo as exc:
            return str(exc)
        return None

    tried, failures = probe_spread(len(dataset), max_files, open_one)
    if len(failures) == tried:
        raise DataError(f"none of the {tried} videos checked could be read, e.g. {failures[0]}")


def open_video_clips(
    cfg: DataConfig, img_size: int, num_frames: int, channels: int, mean: Sequence[float], std: Sequence[float]
) -> VideoClipDataset:
    """The training clips of ``data.data_dir``: ``num_frames`` frames ``data.frame_stride`` apart
    from a random start, one random resized crop (``data.crop_scale``) and flip per clip, at
    ``img_size`` px, normalised; class folders ``DIR/train/<class>/`` or a flat folder.

    Raises:
        DataError: No video files, or none of them readable.
    """
    if cfg.data_dir is None:
        raise DataError("video pre-training needs data.data_dir=DIR (--data-dir), a folder of videos (files or frame folders)")
    root = Path(cfg.data_dir)
    clips = VideoClipDataset(
        root, "train", num_frames=num_frames, stride=cfg.frame_stride, size=img_size, train=True,
        channels=channels, crop_scale=tuple(cfg.crop_scale), mean=mean, std=std, layout=video_layout(root),
    )
    check_videos_readable(clips)
    return clips
