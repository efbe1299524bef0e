"""``hpm visualize``: Figure-2-style panels of a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpm.cli.args import index_list


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm visualize``."""
    v = subs.add_parser(
        "visualize", help="panels per image: input, real and predicted per-patch loss, HPM mask, reconstruction",
        description="Figure-2-style panels of a checkpoint, one row per image, one colour scale per map type. "
                    "A video run draws clips instead: per clip and shown frame the frame, real and predicted "
                    "per-token loss, the run's mask and the reconstruction (PNG), and the same over time (GIF).",
    )
    v.add_argument("path", help="run directory (newest checkpoint) or checkpoint folder")
    v.add_argument("--out", help="output folder (default PATH/figures)")
    v.add_argument("--name", help="file name of the PNG (default patches.png; video: clips.png, the GIF beside it)")
    v.add_argument("--indices", type=index_list, metavar="I,J,...",
                   help="images of the data set's split by index (default: 8 taken round-robin over the classes, unless --images)")
    v.add_argument("--images", nargs="+", metavar="FILE", help="image files (converted to the model's channels)")
    v.add_argument("--split", choices=["test", "train"],
                   help="split of --indices (default test; val/ for image folders)")
    v.add_argument("--num-masks", type=int, default=10, help="M random masks averaged for the real loss (default 10)")
    v.add_argument("--alpha", type=float, help="α of the HPM mask (default: the run's last α)")
    v.add_argument("--seed", type=int, default=0, help="seeds the masks")
    v.add_argument("--data-dir", help="take the images from this ImageFolder (DIR/val/ or DIR/train/)")
    v.add_argument("--data-root", help="take the images from this Fashion-MNIST folder")
    v.add_argument("--frames", type=index_list, metavar="F,G,...",
                   help="video: frames shown (PNG columns, GIF frames; default every tubelet's first frame)")
    v.add_argument("--clips", type=int, default=4,
                   help="video: clips shown, round-robin over the classes, unless --indices (default 4)")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw the panels (the clip picture and GIF of a video run) and print where they went."""
    from hpm.viz.panels import visualize
    from hpm.viz.video import is_video_run

    out = args.out if args.out is not None else Path(args.path) / "figures"
    if is_video_run(args.path):
        return _run_video(args, out)
    result = visualize(
        args.path, out, indices=args.indices, files=args.images, split=args.split, num_masks=args.num_masks,
        alpha=args.alpha, seed=args.seed, data_dir=args.data_dir, data_root=args.data_root,
        filename=args.name or "patches.png",
    )
    width, height = result.size_px
    print(
        f"{result.rows} image(s), {result.panels} panels, {width}x{height} px ({result.seconds:.1f} s) -> {result.path}"
    )
    return 0


def _run_video(args: argparse.Namespace, out: str | Path) -> int:
    """The clip picture of a video run."""
    from hpm.errors import DataError
    from hpm.viz.video import DEFAULT_FILE, visualize_video

    if args.images or args.data_root:
        raise DataError("a video run reads clips of a folder of videos: give --data-dir DIR, not --images or --data-root")
    split = {"test": "val", "train": "train", None: None}[args.split]
    result = visualize_video(
        args.path, out, indices=args.indices, count=args.clips, frames=args.frames, split=split,
        num_masks=args.num_masks, alpha=args.alpha, seed=args.seed, data_dir=args.data_dir,
        filename=args.name or DEFAULT_FILE,
    )
    width, height = result.size_px
    print(f"{result.rows} clip(s), frames {','.join(map(str, result.frames))}, {width}x{height} px "
          f"({result.seconds:.1f} s) -> {result.path}, {result.gif}")
    return 0
