"""One clip-level protocol on a video encoder: k-NN or linear probe on view-averaged frozen
features, or a fine-tune with multi-view testing; called by :func:`hpm.eval.run.run_eval`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hpm.data.labels import LabelCount
from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, resolve_precision
from hpm.errors import ConfigError
from hpm.eval.encoder import LoadedEncoder
from hpm.eval.video.data import VideoEvalData, build_video_eval_data
from hpm.eval.video.features import run_video_knn, run_video_linear
from hpm.eval.video.finetune import run_video_finetune
from hpm.eval.video.options import VideoOptions
from hpm.eval.video.recipes import build_video_finetune_config

if TYPE_CHECKING:
    from hpm.eval.run import EvalOptions


def _finetune_source(enc: LoadedEncoder, data: VideoEvalData, seed: int) -> dict[str, Any]:
    """What a video fine-tune is of, compared when it resumes: the encoder (its checkpoint as an
    absolute path), the clips (folder, label kind, views) and the subset seed."""
    encoder = enc.describe()
    if encoder["checkpoint"] is not None:
        encoder["checkpoint"] = str(Path(encoder["checkpoint"]).resolve())
    described = data.describe()
    return {"encoder": encoder, "data": {**described, "folder": str(Path(described["folder"]).resolve())},
            "subset_seed": seed}


def evaluate_video(
    protocol: str, enc: LoadedEncoder, opts: EvalOptions, labels: LabelCount | None, device: torch.device,
    dist: D.DistInfo, run_dir: Path,
) -> tuple[dict[str, Any], VideoEvalData, Resolved]:
    """Evaluate a video encoder with ``protocol`` on the labelled clips of ``opts.data_dir``.

    Args:
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        enc: The encoder (``enc.model.is_video``).
        opts: The evaluation options; ``opts.video`` (None: defaults) holds the label kind, the views
            and the fine-tune recipe. ``opts.batch_size`` counts clips (videos x views) per pass.
        labels: Few labels, or None.
        device: Where to run.
        dist: This process's place in a torchrun job (fine-tune).
        run_dir: The fine-tune directory (checkpoints, resume).

    Returns:
        ``(result, data, precision)``.

    Raises:
        ConfigError: Raw pixels (not available for clips) or a bad option.
        DataError: As :func:`~hpm.eval.video.data.build_video_eval_data`.
    """
    video = opts.video or VideoOptions()
    if opts.raw_pixels:
        raise ConfigError("--raw-pixels reads images; a video run's floor is --random-init")
    if opts.data_root is not None or opts.img_size not in (None, enc.cfg.model.img_size):
        raise ConfigError("a video run is evaluated on a clip folder at its own size: use --data-dir, "
                          "not --data-root or --img-size")
    if protocol == "finetune":
        ft = video.finetune or build_video_finetune_config()
        precision = resolve_precision(ft.precision if opts.precision == "auto" else opts.precision, device)
        data = build_video_eval_data(enc.cfg, opts.data_dir, video, None if labels else ft.train_subset,
                                     ft.test_subset, opts.seed, labels)
        result, _ = run_video_finetune(enc.model, data, ft, device, precision, dist, run_dir=run_dir,
                                       source=_finetune_source(enc, data, opts.seed))
        return result, data, precision
    precision = resolve_precision(opts.precision, device)
    data = build_video_eval_data(enc.cfg, opts.data_dir, video, None if labels else opts.train_subset,
                                 opts.test_subset, opts.seed, labels)
    model = enc.model.to(device)
    per_pass = max(1, opts.batch_size // (video.test_clips * video.test_crops))  # videos per forward pass
    if protocol == "knn":
        result = run_video_knn(model, data, opts.ks, opts.pool, opts.temperature, per_pass, device, precision,
                               opts.num_workers)
    else:
        result = run_video_linear(model, data, opts.pool, opts.probe, per_pass, device, precision, opts.num_workers)
    return result, data, precision
