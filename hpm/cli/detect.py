"""``hpm eval detect``: object detection and instance segmentation of an encoder on COCO-format
data (the ``detect`` protocol of ``hpm eval``, registered by :func:`add_protocol`)."""

from __future__ import annotations

import argparse

from hpm.cli.args import add_dense_eval_args, dense_eval_overrides

DESCRIPTION = (
    "Object detection and instance segmentation (ViTDet protocol): the encoder's last block through ViTDet's "
    "simple feature pyramid into torchvision's Mask R-CNN, fine-tuned end to end (layer-wise lr decay, AdamW, "
    "drop path). Data: COCO instance JSON, in the layout images/{training,validation}/ + "
    "annotations/instances_{training,validation}.json (e.g. from `hpm data scenes`) or given one by one. Reports "
    "COCO box and mask AP (pycocotools) and writes the predictions as COCO results beside the result file. "
    "Checkpoints and the exported detector go to the result file's path without .json; re-running the same "
    "command resumes an interrupted run and only reports a finished one; another recipe or encoder is refused."
)


def add_protocol(protocols: argparse._SubParsersAction) -> None:
    """Register ``detect`` among the protocols of ``hpm eval``."""
    p = protocols.add_parser("detect", description=DESCRIPTION,
                             help="detection and instance segmentation (Mask R-CNN), COCO AP; re-run to resume")
    p.add_argument("path", nargs="?", help="run directory (newest checkpoint) or checkpoint folder")
    p.add_argument("--data-dir", help="data in COCO's layout: images/<split>/ and annotations/instances_<split>.json")
    p.add_argument("--train-json", help="the training COCO file (instead of --data-dir's)")
    p.add_argument("--val-json", help="the validation COCO file (instead of --data-dir's)")
    p.add_argument("--train-images", help="the training images' folder (instead of --data-dir's)")
    p.add_argument("--val-images", help="the validation images' folder (instead of --data-dir's)")
    p.add_argument("--recipe", default="small", choices=["small", "coco"],
                   help="small (default: the scenes at 64 px, minutes on a CPU) or coco (ViTDet-B, 1024 px; "
                        "a GPU recipe)")
    add_dense_eval_args(p)
    p.add_argument("--out", help="result JSON (default PATH/eval/detect.json); the run directory is this path "
                                 "without .json, the predictions go beside it as <name>.predictions.json")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="any detection key, e.g. lr=1e-4 layer_decay=0.7 image_size=64 min_box_size=2 "
                        "ckpt_every_steps=100")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the detection protocol of ``args`` and print the summary line and the result file."""
    from hpm.eval.detect import DetectOptions, build_detect_config, run_detect_eval
    from hpm.eval.detect.protocol import summary_line
    from hpm.eval.segment import random_init_config

    overrides = dense_eval_overrides(args)
    flags = {"epochs": args.epochs}
    recipe = build_detect_config(args.recipe, [*overrides, *(f"{k}={v}" for k, v in flags.items() if v is not None)])
    opts = DetectOptions(
        data_dir=args.data_dir, train_json=args.train_json, val_json=args.val_json, train_images=args.train_images,
        val_images=args.val_images, random_init=args.random_init, weights=args.weights, labels=args.labels,
        precision=args.precision or "auto", device=args.device, seed=args.seed, out=args.out,
        cfg=random_init_config(args.preset) if args.path is None else None, recipe=recipe,
    )
    record, path = run_detect_eval(args.path, opts)
    if path is not None:
        print(summary_line(record, path))
    return 0
