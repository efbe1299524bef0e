"""One crop and flip for a whole clip: torchvision's v2 transforms applied to a video tensor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2


def build_clip_transform(
    size: int,
    train: bool,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The transform from decoded frames to a model's clip.

    Training takes one random resized crop and one random horizontal flip for all frames of
    the clip (the parameters are drawn once per call, from torch's generator); evaluation
    resizes the shorter side to ``size`` and takes the centre.

    Args:
        size: Output side in pixels.
        train: Random crop and flip (True) or resize and centre crop (False).
        crop_scale: Range of the crop's area as a fraction of the frame (training).
        mean: Per-channel mean to subtract after scaling to [0, 1]; None leaves the values.
        std: Per-channel standard deviation to divide by (with ``mean``).

    Returns:
        A function from uint8 ``[T, C, H, W]`` to float32 ``[C, T, size, size]``.
    """
    if train:
        geometry = [
            v2.RandomResizedCrop(
                size, scale=tuple(crop_scale), interpolation=InterpolationMode.BICUBIC, antialias=True
            ),
            v2.RandomHorizontalFlip(),
        ]
    else:
        geometry = [
            v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
        ]
    steps = [*geometry, v2.ToDtype(torch.float32, scale=True)]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(list(mean), list(std)))
    pipeline = v2.Compose(steps)

    def transform(frames: torch.Tensor) -> torch.Tensor:
        clip = pipeline(tv_tensors.Video(frames))  # [T, C, size, size] float32
        return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()  # [C, T, size, size]

    return transform
