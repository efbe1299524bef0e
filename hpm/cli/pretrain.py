"""``hpm pretrain``: pre-train MAE or HPM; re-running the command resumes."""

from __future__ import annotations

import argparse

from hpm.cli.args import TARGETS, add_config_args, flag_overrides


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm pretrain``."""
    p = subs.add_parser("pretrain", help="pre-train MAE / HPM; re-run to resume")
    add_config_args(p)
    p.add_argument("--output-dir", help="run directory (resumes if it holds a checkpoint)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int, help="seeded, class-balanced subset of N training images")
    p.add_argument("--mask", choices=["random", "block", "hpm", "attention", "tube", "hpm_tube"],
                   help="masking strategy; tube and hpm_tube need a video model (--preset video_small)")
    p.add_argument("--loss-predictor", choices=["relative", "absolute", "none"])
    p.add_argument("--target", choices=TARGETS,
                   help="reconstruction target (default norm_pix); model needs loss.target_weights=FILE")
    p.add_argument("--teacher-view", choices=["full", "masked"],
                   help="what HPM's EMA teacher scores: the whole image (the paper's) or random partial views")
    p.add_argument("--data-dir", help="image folder: train/<class>/ (and val/), ADE20K's images/training/, "
                   "a flat folder, or packed shards; or a folder of video files (train/<class>/ or flat) "
                   "for a video preset")
    p.add_argument("--data-root", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config from the flags and pre-train."""
    from hpm.config import build_config
    from hpm.pretrain import run_pretrain

    cfg = build_config(args.config, flag_overrides(args))
    run_pretrain(cfg)
    return 0
