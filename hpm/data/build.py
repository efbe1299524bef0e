"""Build the pre-training data set described by a :class:`~hpm.config.DataConfig`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset, Subset

from hpm.config import DataConfig
from hpm.data.augmented import SeededTransformDataset
from hpm.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ArrayImageDataset,
    load_fashion_mnist,
)
from hpm.data.draft import DraftCropDataset, supports_draft
from hpm.data.folder import ImageFolderDataset, check_readable
from hpm.data.layout import ACCEPTED_LAYOUTS
from hpm.data.shards import ShardDataset
from hpm.data.source import open_image_dataset
from hpm.data.subset import balanced_subset
from hpm.data.transforms import build_pretrain_transform
from hpm.data.video.dataset import is_video_dir
from hpm.data.video.pretrain import KeyedSubset, open_video_clips
from hpm.errors import ConfigError, DataError

IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass
class PretrainData:
    """A pre-training data set and what the model needs to know about it.

    Attributes:
        dataset: Augmented samples, indexed by ``(index, sample_seed)`` pairs (video: clips
            [C, T, H, W]).
        base: The un-augmented data set ``dataset`` wraps (a ``Subset`` if ``data.subset``).
        channels: Image channels (1 or 3).
        num_classes: Number of classes of the full data set (0 for an unlabelled folder).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        name: ``"fashion_mnist"``, ``"folder"`` (an image folder or its shards) or ``"video"``
            (a folder of video files).
        num_images: Number of samples in ``dataset``.
        labels: int64 labels ``[num_images]`` of ``dataset``'s samples (all
            :data:`~hpm.data.folder.NO_LABEL` for an unlabelled folder).
        classes: Class names, indexed by label (empty for an unlabelled folder).
    """

    dataset: SeededTransformDataset
    base: Dataset
    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    num_images: int
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    classes: tuple[str, ...] = ()


def _stats(
    given: Sequence[float] | None, default: tuple[float, ...], channels: int, key: str
) -> tuple[float, ...]:
    values = default if given is None else tuple(float(v) for v in given)
    if len(values) != channels:
        raise DataError(
            f"data.{key} has {len(values)} entries but the images have {channels} channel(s); "
            f"give one value per channel, e.g. data.{key}=[{', '.join(['0.5'] * channels)}]"
        )
    if key == "std" and any(v <= 0 for v in values):
        raise DataError(f"data.std must be positive, got {list(values)}")
    return values


def _fashion_mnist(cfg: DataConfig) -> tuple[ArrayImageDataset, tuple[str, ...]]:
    if cfg.channels == 3:
        raise DataError("Fashion-MNIST is greyscale: data.channels must be 1 or null for it")
    images, labels = load_fashion_mnist(cfg.root, "train")
    return ArrayImageDataset(images, labels, len(FASHION_MNIST_CLASSES)), FASHION_MNIST_CLASSES


def _folder(cfg: DataConfig) -> tuple[ImageFolderDataset | ShardDataset, tuple[str, ...]]:
    """The train split of ``data.data_dir``: a pack of shards, class folders or an unlabelled
    layout (:mod:`hpm.data.layout`); pre-training ignores the labels."""
    if cfg.data_dir is None:
        raise DataError(f"data.dataset=folder needs data.data_dir=DIR (--data-dir); {ACCEPTED_LAYOUTS}")
    dataset = open_image_dataset(cfg.data_dir, "train", channels=cfg.channels or 3)
    check_readable(dataset)
    return dataset, tuple(dataset.classes)


def is_video_data(cfg: DataConfig) -> bool:
    """Whether the configured data is a folder of video files (:func:`~hpm.data.video.is_video_dir`)."""
    return cfg.dataset == "folder" and cfg.data_dir is not None and is_video_dir(cfg.data_dir)


def _subset_indices(cfg: DataConfig, labels: np.ndarray, seed: int) -> np.ndarray | None:
    """The seeded, class-balanced ``data.subset`` of samples with ``labels``, or None (all)."""
    if cfg.subset is None:
        return None
    if cfg.subset > len(labels):
        raise DataError(
            f"data.subset={cfg.subset} is larger than the data set ({len(labels)} images); "
            "lower it or leave it unset"
        )
    return balanced_subset(labels, cfg.subset, seed if cfg.subset_seed is None else cfg.subset_seed)


def build_video_data(cfg: DataConfig, img_size: int, num_frames: int, seed: int) -> PretrainData:
    """Clips of ``num_frames`` frames from a folder of video files, the optional subset taken
    (:func:`~hpm.data.video.open_video_clips` samples, crops and normalises them)."""
    channels = cfg.channels or 3
    default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    mean = _stats(cfg.mean, default_mean, channels, "mean")
    std = _stats(cfg.std, default_std, channels, "std")
    clips = open_video_clips(cfg, img_size, num_frames, channels, mean, std)
    indices = _subset_indices(cfg, clips.labels, seed)
    dataset = clips if indices is None else KeyedSubset(clips, indices.tolist())
    labels = clips.labels if indices is None else clips.labels[indices]
    return PretrainData(
        dataset=dataset,  # type: ignore[arg-type]  # clips keyed by (index, seed) as the image sets
        base=dataset, channels=channels, num_classes=clips.num_classes, mean=mean, std=std, name="video",
        num_images=len(labels), labels=labels, classes=tuple(clips.classes),
    )


def _check_video_fit(cfg: DataConfig, num_frames: int | None) -> bool:
    """Whether the data are clips for a video model; video files for an image model, or images
    for a video model, are a ConfigError."""
    video = is_video_data(cfg)
    if video and num_frames is None:
        raise ConfigError(f"{cfg.data_dir} holds video files: pre-train a video model (model.num_frames set, "
                          "e.g. --preset video_small)")
    if num_frames is not None and not video:
        raise ConfigError(f"model.num_frames={num_frames} makes a video model, which needs data.data_dir set to "
                          "a folder of video files (DIR/train/<class>/*.mkv|mp4|webm|avi, or flat)")
    return video


def build_pretrain_data(cfg: DataConfig, img_size: int, seed: int, num_frames: int | None = None) -> PretrainData:
    """Load the configured training images (or clips), take the optional subset and attach the augmentation.

    Args:
        cfg: The ``data`` section of the run config.
        img_size: Side of the square crops fed to the model.
        seed: Run seed (chooses the subset unless ``cfg.subset_seed`` is set).
        num_frames: Frames per clip of a video model (``model.num_frames``); None for an image model.

    Returns:
        The augmented data set and its description.

    Raises:
        DataError: The data is missing or unreadable, or the config does not fit it.
        ConfigError: Video files for an image model, or images for a video model.
    """
    if _check_video_fit(cfg, num_frames):
        assert num_frames is not None
        return build_video_data(cfg, img_size, num_frames, seed)
    if cfg.dataset == "fashion_mnist":
        full, classes = _fashion_mnist(cfg)
        default_mean, default_std = FASHION_MNIST_MEAN, FASHION_MNIST_STD
    else:
        full, classes = _folder(cfg)
        default_mean, default_std = (
            (IMAGENET_MEAN, IMAGENET_STD) if full.channels == 3 else ((0.5,), (0.5,))
        )
    channels = full.channels
    mean = _stats(cfg.mean, default_mean, channels, "mean")
    std = _stats(cfg.std, default_std, channels, "std")

    base: Dataset = full
    labels = full.labels
    indices = _subset_indices(cfg, full.labels, seed)
    if indices is not None:
        base = Subset(full, indices.tolist())
        labels = full.labels[indices]

    if cfg.draft and supports_draft(base):
        dataset: SeededTransformDataset = DraftCropDataset(base, img_size, mean, std, cfg.crop_scale, cfg.hflip, cfg.fit)
    else:
        dataset = SeededTransformDataset(
            base, build_pretrain_transform(img_size, mean, std, cfg.crop_scale, cfg.hflip, cfg.fit)
        )
    return PretrainData(
        dataset=dataset,
        base=base,
        channels=channels,
        num_classes=full.num_classes,
        mean=mean,
        std=std,
        name=cfg.dataset,
        num_images=len(labels),
        labels=labels,
        classes=classes,
    )
