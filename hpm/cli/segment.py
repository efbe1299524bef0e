"""``hpm eval segment``: semantic segmentation of an encoder on data in ADE20K's layout (the
``segment`` protocol of ``hpm eval``, registered by :func:`add_protocol`)."""

from __future__ import annotations

import argparse

from hpm.cli.args import add_dense_eval_args, dense_eval_overrides

DESCRIPTION = (
    "Semantic segmentation (BEiT / MAE protocol) on data in ADE20K's layout: images/{training,validation}/ and "
    "annotations/{training,validation}/ (index PNGs). --head upernet (default) fine-tunes the encoder with a "
    "UperNet head on a 4-level feature pyramid (layer-wise lr decay, AdamW, poly schedule, drop path); --head "
    "linear trains a 1x1 classifier on the frozen last block. Reports mIoU, pixel accuracy and per-class IoU. "
    "Checkpoints go to the result file's path without .json; re-running the same command resumes an "
    "interrupted run and only reports a finished one; another recipe or encoder is refused."
)


def add_protocol(protocols: argparse._SubParsersAction) -> None:
    """Register ``segment`` among the protocols of ``hpm eval``."""
    p = protocols.add_parser("segment", help="semantic segmentation (UperNet or linear head), mIoU; re-run to resume",
                             description=DESCRIPTION)
    p.add_argument("path", nargs="?", help="run directory (newest checkpoint) or checkpoint folder")
    p.add_argument("--data-dir", required=True, help="data in ADE20K's layout (e.g. from `hpm data scenes`)")
    p.add_argument("--reduce-zero-label", action="store_true",
                   help="ADE20K's convention: label 0 is ignored (255), the others drop by one")
    p.add_argument("--head", choices=["upernet", "linear"],
                   help="UperNet on a feature pyramid (default) or linear on frozen features")
    p.add_argument("--recipe", default="small", choices=["small", "ade20k"],
                   help="small (default: the scenes at 64 px, minutes on a CPU) or ade20k (512 crop, 160k "
                        "iterations; a GPU recipe)")
    add_dense_eval_args(p)
    p.add_argument("--out", help="result JSON (default PATH/eval/segment[_linear].json); the run directory is this "
                                 "path without .json")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="any segmentation key, e.g. lr=1e-4 layer_decay=0.65 crop_size=64 ckpt_every_steps=100")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the segmentation protocol of ``args`` and print the summary line and the result file."""
    from hpm.eval.segment import SegmentOptions, build_segment_config, random_init_config, run_segment_eval
    from hpm.eval.segment.protocol import summary_line

    overrides = dense_eval_overrides(args)
    flags = {"epochs": args.epochs, "head": args.head, "reduce_zero_label": True if args.reduce_zero_label else None}
    recipe = build_segment_config(args.recipe, [*overrides, *(f"{k}={v}" for k, v in flags.items() if v is not None)])
    opts = SegmentOptions(
        data_dir=args.data_dir, random_init=args.random_init, weights=args.weights, labels=args.labels,
        precision=args.precision or "auto", device=args.device, seed=args.seed, out=args.out,
        cfg=random_init_config(args.preset) if args.path is None else None, recipe=recipe,
    )
    record, path = run_segment_eval(args.path, opts)
    if path is not None:
        print(summary_line(record, path))
    return 0
