"""``hpm visualize``: the panel figure of a run's checkpoint, written as a PNG."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hpm.data import build_eval_transform
from hpm.errors import DataError
from hpm.eval.data import normalisation
from hpm.eval.patch_loss import load_pretrained
from hpm.viz.panels.drawing import draw_panels
from hpm.viz.panels.images import choose_images
from hpm.viz.panels.maps import compute_maps


@dataclass
class PanelsResult:
    """What :func:`visualize` wrote."""

    path: Path
    rows: int
    panels: int
    size_px: tuple[int, int]  # (width, height)
    seconds: float


def _run_name(ckpt: Path) -> str:
    """``RUN`` for ``RUN/checkpoints/step_X``, else the checkpoint folder's name."""
    return ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.name


def visualize(
    path: str | Path,
    out_dir: str | Path,
    indices: Sequence[int] | None = None,
    files: Sequence[str | Path] | None = None,
    split: str | None = None,
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    data_root: str | None = None,
    filename: str = "patches.png",
) -> PanelsResult:
    """Write the panel figure of a run's (newest) checkpoint to ``out_dir/filename``.

    Args:
        path: Run directory (its newest checkpoint) or checkpoint folder.
        out_dir: Folder of the PNG (created).
        indices: Images of the data set's split, by index (default unless ``files`` are
            given: 8 spread over the classes, round-robin in label order, see
            :func:`~hpm.viz.panels.images.default_indices`; ``[]``: none).
        files: Image files, shown after the indexed images.
        split: ``"test"`` (``val/`` for image folders) or ``"train"``; None: test if present.
        num_masks: M, random masks averaged for the real loss.
        alpha: α of the HPM mask (default: the run's last α).
        seed: Seeds the masks.
        data_dir: Take the images from this ImageFolder instead of the run's data.
        data_root: Take them from this Fashion-MNIST folder instead.
        filename: Name of the PNG.

    Raises:
        CheckpointError: No readable checkpoint at ``path``.
        DataError: Missing data or image files, indices out of range, a bad α or M.
    """
    from hpm.eval.run import eval_data_config

    started = time.perf_counter()
    if num_masks < 1:
        raise DataError(f"the number of masks must be at least 1, got {num_masks}")
    models = load_pretrained(path)
    cfg = models.cfg
    channels = int(cfg.model.in_chans or 1)
    data_cfg = eval_data_config(cfg.data, data_dir, data_root)
    images, labels = choose_images(data_cfg, split, indices, files, channels)
    mean, std = normalisation(data_cfg, channels)
    transform = build_eval_transform(cfg.model.img_size, mean, std, data_cfg.fit)
    imgs = torch.stack([transform(img) for img in images])  # [N, C, H, W]
    maps = compute_maps(models, imgs, mean, std, num_masks, alpha, seed, labels)
    title = (
        f"{_run_name(models.checkpoint)}, step {models.step}: mask {cfg.mask.strategy}, "
        f"loss predictor {cfg.loss.predictor}"
    )
    fig = draw_panels(maps, title)
    out = Path(out_dir) / filename
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    width, height = (round(v * fig.dpi) for v in fig.get_size_inches())
    return PanelsResult(out, len(images), len(images) * len(maps.columns), (width, height), time.perf_counter() - started)
