"""A picture of a segmenter's work: for a few validation images, the image, its ground truth and
the prediction (classes in a fixed palette, ignored pixels black)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import make_grid

from hpm.eval.segment.inference import slide_logits
from hpm.eval.segment.recipes import IGNORE_INDEX, SegmentConfig


def palette(num_classes: int) -> Tensor:
    """uint8 ``[num_classes, 3]`` colours: class 0 (background) dark grey, the others spread in hue."""
    import colorsys

    colours = [(48, 48, 48)] + [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_classes - 1, 1), 0.8, 1.0))
                                for i in range(num_classes - 1)]
    return torch.tensor(colours, dtype=torch.uint8)


def colour(labels: Tensor, colours: Tensor) -> Tensor:
    """Class map ``[H, W]`` -> uint8 ``[3, H, W]`` (the ignore value and unknown classes black)."""
    known = (labels >= 0) & (labels < len(colours)) & (labels != IGNORE_INDEX)
    out = torch.zeros(*labels.shape, 3, dtype=torch.uint8)  # [H, W, 3]
    out[known] = colours[labels[known].long()]
    return out.permute(2, 0, 1)


@torch.no_grad()
def predict(model: nn.Module, image: Tensor, cfg: SegmentConfig, size: tuple[int, int]) -> Tensor:
    """The class map ``[H, W]`` of a normalised image ``[C, h, w]``, resized to ``size``."""
    device = next(model.parameters()).device
    logits = slide_logits(model, image[None].to(device), cfg.num_classes, cfg.crop_size, cfg.stride())  # [1, K, h, w]
    logits = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu()


def draw_segmentation(model: nn.Module, dataset: torch.utils.data.Dataset, pairs: list[tuple[Path, Path]],
                      cfg: SegmentConfig, file: Path, count: int = 4) -> Path:
    """Write ``file`` (PNG): one row per validation image (the first ``count``): the image, the
    ground truth and the prediction. ``dataset`` yields the evaluation inputs of ``pairs``."""
    was_training = model.training
    model.eval()
    colours = palette(cfg.num_classes)
    tiles = []
    for index in range(min(count, len(pairs))):
        image, label = dataset[index]  # [C, h, w] normalised, [H, W] full-size classes
        with Image.open(pairs[index][0]) as img:
            rgb = torch.from_numpy(np.array(img.convert("RGB").resize(label.shape[::-1]))).permute(2, 0, 1)
        tiles += [rgb, colour(label, colours), colour(predict(model, image, cfg, tuple(label.shape)), colours)]
    model.train(was_training)
    grid = make_grid(tiles, nrow=3, padding=2)  # [3, H', W']
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(file)
    return file
