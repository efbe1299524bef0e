"""Data sets, augmentation, sampling and subsets for pre-training."""

from hpm.data.augmented import SeededTransformDataset, collate_skip_none
from hpm.data.build import IMAGENET_MEAN, IMAGENET_STD, PretrainData, build_pretrain_data
from hpm.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ArrayImageDataset,
    load_fashion_mnist,
)
from hpm.data.folder import IMAGE_EXTENSIONS, ImageFolderDataset, Unreadable, check_readable, read_image
from hpm.data.labels import LabelCount, label_holdout, labelled_subset, parse_labels
from hpm.data.sampler import GlobalBatchSampler
from hpm.data.shards import ShardDataset, is_shard_dir
from hpm.data.source import open_image_dataset
from hpm.data.subset import balanced_subset
from hpm.data.transforms import build_eval_transform, build_pretrain_transform

__all__ = [
    "ArrayImageDataset",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "GlobalBatchSampler",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "LabelCount",
    "PretrainData",
    "SeededTransformDataset",
    "ShardDataset",
    "Unreadable",
    "balanced_subset",
    "build_eval_transform",
    "build_pretrain_data",
    "build_pretrain_transform",
    "check_readable",
    "collate_skip_none",
    "is_shard_dir",
    "label_holdout",
    "labelled_subset",
    "load_fashion_mnist",
    "open_image_dataset",
    "parse_labels",
    "read_image",
]
