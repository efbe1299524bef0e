"""Pre-training augmentation that decodes a JPEG only at the scale its random crop needs.

MAE's RandomResizedCrop samples a box on the full image and resizes it to ``img_size``; a box
much larger than ``img_size`` throws most decoded pixels away. Here the box is sampled first,
on the full-size coordinates (the header gives the size) with the very random draws
torchvision's transform makes, then the JPEG is decoded with PIL's ``draft`` at the largest
power-of-two reduction (1/2, 1/4, 1/8) that still leaves the box at least ``img_size`` on both
sides, the box is mapped into the reduced image, and the flip and normalisation follow as in
:func:`~hpm.data.transforms.build_pretrain_transform`. When no reduction fits (or the file is not
a JPEG) the output is bit-identical to the plain transform's; otherwise only the decoder's
down-scaling differs, not the crop's position, scale or ratio.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hpm.data.augmented import Sample, SeededTransformDataset
from hpm.data.folder import ImageSource, Unreadable, to_tensor
from hpm.data.transforms import build_pretrain_transform

_LOG = logging.getLogger(__name__)
_REDUCTIONS = (8, 4, 2)  # what libjpeg's DCT scaling offers


def draft_reduction(crop_height: int, crop_width: int, img_size: int) -> int:
    """Largest of 8, 4, 2 (else 1) that keeps a ``crop_height x crop_width`` box >= ``img_size`` a side."""
    for factor in _REDUCTIONS:
        if min(crop_height, crop_width) >= factor * img_size:
            return factor
    return 1


def _unwrap(base: Dataset, index: int) -> tuple[Dataset, int]:
    while isinstance(base, Subset):
        base, index = base.dataset, int(base.indices[index])
    return base, index


def supports_draft(base: Dataset) -> bool:
    """Whether ``base`` (possibly a ``Subset``) gives encoded files (folders, shards)."""
    while isinstance(base, Subset):
        base = base.dataset
    return hasattr(base, "source")


class DraftCropDataset(SeededTransformDataset):
    """:class:`SeededTransformDataset` with MAE's pre-training augmentation, decoding at reduced scale.

    Indexed with ``(index, sample_seed)`` the crop, the draft and the flip depend on the seed
    only, as in the plain data set. ``fit="pad"`` pads images smaller than ``img_size`` first
    (those are never reduced).

    Args:
        base: An :class:`~hpm.data.folder.ImageSource` (folder or shards) or a ``Subset`` of one.
        img_size: Side of the square output.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        crop_scale: Range of the crop's area as a fraction of the image.
        hflip: Probability of a horizontal flip.
        fit: ``"resize"`` or ``"pad"``, as in :func:`~hpm.data.transforms.build_pretrain_transform`.
    """

    def __init__(
        self,
        base: Dataset,
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_scale: tuple[float, float] = (0.2, 1.0),
        hflip: float = 0.5,
        fit: str = "resize",
    ) -> None:
        super().__init__(base, build_pretrain_transform(img_size, mean, std, crop_scale, hflip, fit))
        self.img_size = img_size
        self.fit = fit
        self.crop = v2.RandomResizedCrop(
            img_size, scale=tuple(crop_scale), interpolation=InterpolationMode.BICUBIC, antialias=True
        )
        self.after_crop = v2.Compose(
            [v2.RandomHorizontalFlip(hflip), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        )

    def __getitem__(self, key: int | tuple[int, int]) -> Sample | Unreadable:
        """Return ``(image, label)`` (float ``[C, img_size, img_size]``, int), or ``Unreadable(name)``."""
        if not isinstance(key, (tuple, list)):
            return super().__getitem__(key)
        source, index = _unwrap(self.base, int(key[0]))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(key[1]))
            try:
                image, label = self._decode_and_crop(source, index)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a bad file must never stop training
                _LOG.debug("skipping unreadable image %s: %s", source.name(index), exc)  # type: ignore[attr-defined]
                return Unreadable(source.name(index))  # type: ignore[attr-defined]
            return self.after_crop(image), int(label)

    def _decode_and_crop(self, source: ImageSource, index: int) -> tuple[torch.Tensor, int]:
        """The cropped, resized uint8 ``[C, img_size, img_size]`` image and its label."""
        file, label = source.source(index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(file) as image:
                width, height = image.size
                pad = self.fit == "pad" and min(width, height) < self.img_size
                if pad:
                    width, height = max(width, self.img_size), max(height, self.img_size)
                box = self.crop.make_params([torch.empty(1, 1, 1).expand(1, height, width)])
                factor = 1 if pad else draft_reduction(box["height"], box["width"], self.img_size)
                if factor > 1 and image.format == "JPEG":
                    # PIL reduces by the largest power of two <= min(width // w, height // h)
                    image.draft(image.mode, (max(1, width // factor), max(1, height // factor)))
                tensor = to_tensor(image, source.channels)  # [C, h, w] uint8
        if pad:
            tensor = self.transform.transforms[0](tensor)  # PadTo: [C, height, width]
        h, w = tensor.shape[-2:]
        if (h, w) != (height, width):  # decoded at a reduced scale: the same box, in its pixels
            sy, sx = h / height, w / width
            top, left = round(box["top"] * sy), round(box["left"] * sx)
            box = {"top": top, "left": left, "height": max(1, min(round(box["height"] * sy), h - top)),
                   "width": max(1, min(round(box["width"] * sx), w - left))}
        out = F.resized_crop(tensor, **box, size=[self.img_size, self.img_size],
                             interpolation=InterpolationMode.BICUBIC, antialias=True)
        return out, label
