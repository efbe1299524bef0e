"""Fine-tuning data: timm's training augmentation (PIL) over the evaluation data sets' uint8 images."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data import create_transform
from timm.data.auto_augment import AugmentOp
from timm.data.auto_augment import posterize as timm_posterize
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from hpm.data import Unreadable
from hpm.data.transforms import PadTo
from hpm.engine.preemption import ignore_stop_signals
from hpm.eval.data import EvalData
from hpm.eval.recipes import FinetuneConfig


class PilDataset(Dataset):
    """Feeds a timm PIL transform from a data set of uint8 ``[C, H, W]`` tensors."""

    def __init__(self, base: Dataset, transform: Any, pad_to: int | None = None) -> None:
        self.base = base
        self.transform = transform
        self.pad = PadTo(pad_to) if pad_to else None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int] | Unreadable:
        """Return ``(image, label)`` (transformed float ``[C, H, W]``, int), or ``Unreadable(path)``."""
        item = self.base[index]
        if isinstance(item, Unreadable):
            return item
        image, label = item  # uint8 [C, H, W]
        if self.pad is not None:
            image = self.pad(image)
        return self.transform(TF.to_pil_image(image)), int(label)


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs (timm's augmentations use them) from torch's worker seed;
    leave SIGTERM / SIGUSR1 to the main process (it checkpoints, then stops the workers)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    ignore_stop_signals(worker_id)


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize with Pillow 13's refused ``bits=0`` done as Pillow <= 12 did: a black image.

    timm (1.0.31) asks for 0 bits when a RandAugment magnitude reaches 10 (``mstd`` noise on
    ``m9`` gets there in about 2% of draws, so the paper recipe stopped after a few hundred
    images); Pillow 13 raises ``ValueError`` for it, Pillow <= 12 kept no bit (``i & ~255 = 0``).
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def augment_ops(transform: Any) -> Iterator[Any]:
    """Every timm ``AugmentOp`` inside a transform (RandAugment ops, AutoAugment sub-policies, AugMix)."""
    if isinstance(transform, AugmentOp):
        yield transform
        return
    for name in ("transforms", "ops", "policy"):
        children = getattr(transform, name, None)
        if isinstance(children, list | tuple):
            for child in children:
                yield from augment_ops(child)


def train_transform(data: EvalData, cfg: FinetuneConfig) -> Any:
    """timm's training transform (PIL in): random resized crop, flip, RandAugment, erasing."""
    transform = create_transform(
        data.img_size,
        is_training=True,
        scale=tuple(cfg.crop_scale),
        hflip=cfg.hflip,
        color_jitter=None,
        auto_augment=cfg.auto_augment,
        interpolation="bicubic",
        mean=data.mean,
        std=data.std,
        re_prob=cfg.reprob,
        re_mode="pixel",
        re_count=1,
    )
    for op in augment_ops(transform):
        if op.aug_fn is timm_posterize:
            op.aug_fn = _posterize
    return transform
