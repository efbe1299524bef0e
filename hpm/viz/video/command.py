"""``hpm visualize`` on a video run: the PNG of some validation clips and the GIF beside it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpm.engine.checkpoint import load_state, resolve_checkpoint
from hpm.errors import DataError
from hpm.eval.patch_loss import load_pretrained
from hpm.viz.video.clips import DEFAULT_CLIPS, choose_clips, clip_dataset, clip_normalisation
from hpm.viz.video.drawing import draw_clip_figure, write_gif
from hpm.viz.video.maps import compute_clip_maps
from hpm.viz.video.tiles import clip_tiles

DEFAULT_FILE = "clips.png"


@dataclass
class VideoPictureResult:
    """What :func:`visualize_video` wrote."""

    path: Path  # the PNG
    gif: Path  # the GIF beside it
    rows: int  # clips
    frames: list[int]  # the frames shown (PNG columns, GIF frames)
    size_px: tuple[int, int]  # the PNG's (width, height)
    seconds: float


def is_video_run(path: str | Path) -> bool:
    """Whether the checkpoint at ``path`` (run directory: its newest) is a video model's."""
    state = load_state(resolve_checkpoint(path))
    return state.get("config", {}).get("model", {}).get("num_frames") is not None


def default_frames(num_frames: int, tubelet: int) -> list[int]:
    """Every tubelet's first frame: ``0, t, 2t, ...``."""
    return list(range(0, num_frames, tubelet))


def _check_frames(frames: Sequence[int], num_frames: int) -> list[int]:
    bad = [f for f in frames if not 0 <= f < num_frames]
    if bad or not frames:
        raise DataError(f"frames {bad or list(frames)} are not in 0..{num_frames - 1} of the model's clips")
    return list(frames)


def visualize_video(
    path: str | Path,
    out_dir: str | Path,
    indices: Sequence[int] | None = None,
    count: int = DEFAULT_CLIPS,
    frames: Sequence[int] | None = None,
    split: str | None = None,
    num_masks: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    filename: str = DEFAULT_FILE,
    duration_ms: int = 400,
) -> VideoPictureResult:
    """Write the video picture of a run's (newest) checkpoint to ``out_dir/filename`` and the GIF
    of the same tiles over time to the same name with ``.gif``.

    Args:
        path: Run directory (its newest checkpoint) or checkpoint folder of a video model.
        out_dir: Folder of the pictures (created).
        indices: Clips of the split by index (default: ``count`` round-robin over the classes).
        count: Clips shown when ``indices`` is None.
        frames: Frames shown (PNG columns, GIF frames; default every tubelet's first frame).
        split: ``val`` or ``train`` (default ``val`` if the folder has it).
        num_masks: M, random masks averaged for the real loss.
        alpha: α of a scored mask (default: the run's last α).
        seed: Seeds the masks.
        data_dir: Take the clips from this folder of videos instead of the run's.
        filename: Name of the PNG.
        duration_ms: How long the GIF shows each frame.

    Raises:
        CheckpointError: No readable checkpoint at ``path``.
        DataError: Missing clips, indices or frames out of range, a bad M.
    """
    started = time.perf_counter()
    if num_masks < 1:
        raise DataError(f"the number of masks must be at least 1, got {num_masks}")
    models = load_pretrained(path)
    cfg = models.cfg
    clips, labels = choose_clips(clip_dataset(cfg, data_dir, split), indices, count)  # [N, C, T, H, W]
    shown = _check_frames(frames if frames is not None else default_frames(clips.shape[2], models.student.tubelet_size),
                          clips.shape[2])
    mean, std = clip_normalisation(cfg, clips.shape[1])
    maps = compute_clip_maps(models, clips, mean, std, num_masks=num_masks, alpha=alpha, seed=seed, labels=labels)
    tiles = clip_tiles(maps, shown)
    alpha_text = f", alpha {maps.alpha:.2f}" if maps.alpha is not None else ""
    ckpt = models.checkpoint
    run_name = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.name
    title = (f"{run_name}, step {models.step}\nmask {cfg.mask.strategy}{alpha_text}, "
             f"loss predictor {cfg.loss.predictor}\nreal loss over {num_masks} random masks")
    fig = draw_clip_figure(maps, tiles, title)
    out = Path(out_dir) / filename
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    gif = out.with_suffix(".gif")
    write_gif(tiles, gif, duration_ms)
    width, height = (round(v * fig.dpi) for v in fig.get_size_inches())
    return VideoPictureResult(out, gif, len(labels), shown, (width, height), time.perf_counter() - started)
