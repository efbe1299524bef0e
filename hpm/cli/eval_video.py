"""The flags of ``hpm eval knn|linear|finetune`` that only a video run takes: the label kind,
the test views and the video fine-tune recipes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hpm.cli.args import RECIPE_DEFAULT

if TYPE_CHECKING:
    from hpm.eval.video import VideoOptions


def add_video_args(p: argparse.ArgumentParser) -> None:
    """``--label``, ``--test-clips`` and ``--test-crops``."""
    p.add_argument("--label", help="video runs: the label to evaluate, motion or class (read per clip from "
                                   "DIR/{train,val}.json); default: the class folders (the motions of Moving Fashion-MNIST)")
    p.add_argument("--test-clips", type=int, help="video runs: temporal clips per video, evenly spread (default 2; "
                                                  "VideoMAE: 5 on Kinetics, 2 on Something-Something)")
    p.add_argument("--test-crops", type=int, help="video runs: spatial crops per clip along the long side, left / "
                                                  "centre / right (default 1; VideoMAE: 3); square videos: all the same")


def _given(args: argparse.Namespace) -> bool:
    """Whether a video-only flag or recipe was given."""
    from hpm.eval.video import VIDEO_RECIPES

    return (args.label, args.test_clips, args.test_crops) != (None, None, None) or \
        getattr(args, "recipe", None) in VIDEO_RECIPES


def video_options(args: argparse.Namespace, overrides_given: list[str]) -> VideoOptions | None:
    """The video options of the command line: for a fine-tune of a video run (or any video flag)
    with its recipe (``--recipe``, default ``video_small``, ``--config``, flags and ``key=value``);
    None for an image run without video flags (one given there is refused when it loads)."""
    from hpm.config import parse_overrides
    from hpm.eval.video import VideoOptions, build_video_finetune_config, is_video_source

    finetune = args.protocol == "finetune" and is_video_source(args.path, args.preset)
    if not finetune and not _given(args):
        return None
    views = {k: v for k, v in (("test_clips", args.test_clips), ("test_crops", args.test_crops)) if v is not None}
    opts = VideoOptions(label=args.label, **views)
    if finetune:
        overrides = parse_overrides(overrides_given)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        for key, flag in (("train_subset", args.subset), ("test_subset", args.test_subset)):
            if flag is not RECIPE_DEFAULT:
                overrides[key] = flag
        opts.finetune = build_video_finetune_config(args.recipe, args.config, overrides)
    return opts
