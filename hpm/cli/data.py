"""``hpm data``: prepare data. Each action is one ``add_<action>`` function plus one line in
:data:`ACTIONS`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hpm.cli.args import IntermixedParser


def add_pack(actions: argparse._SubParsersAction) -> None:
    """Register ``hpm data pack DIR --out SHARDS``."""
    k = actions.add_parser(
        "pack", help="write an image folder (train/, val/) as WebDataset tar shards with a random-access index",
        description="Packs DIR/train/<class>/ (and DIR/val/) into SHARDS/<split>-NNNNNN.tar plus SHARDS/hpm-shards.json; "
                    "--data-dir SHARDS then pre-trains and evaluates from them. An image within --max-side is stored "
                    "as it is; a larger one is shrunk and re-encoded losslessly (PNG or lossless WebP), a JPEG as "
                    "JPEG. Re-running resumes (finished shards are skipped); a pack of another folder or with other "
                    "options is refused.",
    )
    k.add_argument("src", metavar="DIR", help="image folder with train/<class>/ (and val/<class>/)")
    k.add_argument("--out", required=True, metavar="SHARDS", help="pack folder (created)")
    k.add_argument("--max-side", type=int, default=320,
                   help="images with a longer side above this are shrunk to it (default 320 px)")
    k.add_argument("--quality", type=int, default=90,
                   help="JPEG quality of lossy re-encodes: shrunk JPEGs, and every image with --lossy (default 90)")
    how = k.add_mutually_exclusive_group()
    how.add_argument("--lossy", action="store_true",
                     help="store every image as JPEG: a smaller pack, but PNGs and other lossless sources lose pixels")
    how.add_argument("--keep-original", action="store_true", help="store every file's original bytes, never shrunk")
    k.add_argument("--shard-size", type=int, default=2000, help="samples per shard (default 2000)")
    k.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")
    k.set_defaults(func=pack)


def pack(args: argparse.Namespace) -> int:
    """``hpm data pack DIR --out SHARDS``: an image folder as WebDataset shards (:mod:`hpm.data.pack`)."""
    from hpm.data.pack import PackOptions, pack_folder, pack_summary
    from hpm.data.shards import read_index

    options = PackOptions(max_side=args.max_side, quality=args.quality, keep_original=args.keep_original,
                          lossy=args.lossy, samples_per_shard=args.shard_size)
    index = pack_folder(args.src, args.out, options, workers=args.workers)
    print(f"packed {args.src} -> {index.parent} (index {index.name}): {pack_summary(read_index(index.parent))}")
    return 0


def add_scenes(actions: argparse._SubParsersAction) -> None:
    """Register ``hpm data scenes OUT``."""
    s = actions.add_parser(
        "scenes", help="write scenes of Fashion-MNIST items on cluttered backgrounds (ADE20K layout + COCO JSON)",
        description="Composes 1-4 tinted, scaled Fashion-MNIST items with occlusion on cluttered backgrounds "
                    "(training scenes from its train split, validation scenes from its test split) and writes "
                    "OUT/images/{training,validation}/*.png, OUT/annotations/{training,validation}/*.png "
                    "(0 background, class + 1) and OUT/annotations/instances_{training,validation}.json (COCO "
                    "instances, RLE masks). The same seed writes the same bytes.",
    )
    s.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --overwrite)")
    s.add_argument("--num-train", type=int, default=20_000, help="training scenes (default 20000)")
    s.add_argument("--num-val", type=int, default=2_000, help="validation scenes (default 2000)")
    s.add_argument("--size", type=int, default=64, help="scene side in pixels (default 64)")
    s.add_argument("--seed", type=int, default=0, help="seeds every scene with its split and index (default 0)")
    s.add_argument("--data-root", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    s.add_argument("--overwrite", action="store_true", help="replace the scenes of a data set already in OUT")
    s.set_defaults(func=scenes)


def scenes(args: argparse.Namespace) -> int:
    """``hpm data scenes OUT``: the scenes data set (:mod:`hpm.data.scenes`)."""
    from hpm.config import FASHION_MNIST_ROOT
    from hpm.data.scenes import SceneOptions, write_scenes

    options = SceneOptions(num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed)
    summary = write_scenes(args.out, options, root=args.data_root or FASHION_MNIST_ROOT, overwrite=args.overwrite)
    counts = ", ".join(f"{split} {n} scenes / {summary.instances[split]} instances" for split, n in summary.scenes.items())
    print(f"wrote {summary.out}: {counts}")
    return 0


def add_moving(actions: argparse._SubParsersAction) -> None:
    """Register ``hpm data moving OUT``."""
    m = actions.add_parser(
        "moving", help="write Moving Fashion-MNIST clips as lossless video files (labels: motion and class)",
        description="Moves 1-2 Fashion-MNIST items, bouncing off the edges, over a black canvas (training clips "
                    "from its train split, validation clips from its test split) and writes "
                    "OUT/{train,val}/<motion direction>/clip_NNNNNN.mkv (FFV1, lossless) plus OUT/{train,val}.json "
                    "with each clip's motion (8 directions of the first item) and item classes. The class folders "
                    "are the motions, so the clip data set reads the temporal task. The same seed writes the same clips.",
    )
    m.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --overwrite)")
    m.add_argument("--num-train", type=int, default=5_000, help="training clips (default 5000)")
    m.add_argument("--num-val", type=int, default=1_000, help="validation clips (default 1000)")
    m.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    m.add_argument("--size", type=int, default=32, help="frame side in pixels (default 32)")
    m.add_argument("--seed", type=int, default=0, help="seeds every clip with its split and index (default 0)")
    m.add_argument("--data-root", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    m.add_argument("--overwrite", action="store_true", help="replace the clips of a data set already in OUT")
    m.set_defaults(func=moving)


def moving(args: argparse.Namespace) -> int:
    """``hpm data moving OUT``: the Moving Fashion-MNIST clips (:mod:`hpm.data.video.write`)."""
    from hpm.config import FASHION_MNIST_ROOT
    from hpm.data.video.write import MovingOptions, write_moving

    options = MovingOptions(num_train=args.num_train, num_val=args.num_val, frames=args.frames, size=args.size,
                            seed=args.seed)
    summary = write_moving(args.out, options, root=args.data_root or FASHION_MNIST_ROOT, overwrite=args.overwrite)
    counts = ", ".join(f"{split} {n} clips" for split, n in summary.clips.items())
    print(f"wrote {summary.out}: {counts} of {options.frames} frames at {options.size} px")
    return 0


ACTIONS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_pack,
    add_scenes,
    add_moving,
)


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm data`` and its actions."""
    d = subs.add_parser("data", help="prepare data: `hpm data pack DIR --out SHARDS/`")
    actions = d.add_subparsers(dest="action", required=True, parser_class=IntermixedParser)
    for add in ACTIONS:
        add(actions)
