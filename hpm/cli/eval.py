"""``hpm eval knn|linear|finetune|segment|detect``: evaluate a checkpoint (or a random encoder, or raw pixels)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hpm.cli import detect, segment
from hpm.cli.eval_video import add_video_args, video_options
from hpm.cli.args import RECIPE_DEFAULT, IntermixedParser, count_or_all, int_list

if TYPE_CHECKING:
    from hpm.data.labels import LabelCount
    from hpm.eval.finetune import FinetuneConfig
    from hpm.eval.run import EvalOptions

PROTOCOL_HELP = {
    "knn": "weighted k-NN (T=0.07) on frozen features, k in 10, 20, 100, 200",
    "linear": "linear probe (BatchNorm + linear) on cached frozen features",
    "finetune": "end-to-end fine-tuning (layer decay, drop path, mixup/cutmix, smoothing); re-run to resume",
}
FINETUNE_DESCRIPTION = (
    "End-to-end fine-tuning as a timm ViT classifier. Checkpoints go to the fine-tune directory, the result "
    "file's path without .json (default PATH/eval/finetune/; --out X/ft.json: X/ft/), after every epoch and "
    "every ckpt_every_steps=N optimizer steps; the newest 2 are kept. Re-running the same command resumes an "
    "interrupted fine-tune at its next step (bit-identical with num_workers=0) and only reports a finished "
    "one; another recipe or encoder is refused. SIGTERM / SIGUSR1 / Ctrl-C checkpoint and exit 143 / 138 / "
    "130. At the end "
    "the classifier is written as DIR/classifier.safetensors + classifier.json for timm.create_model."
)


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm eval`` and its protocols."""
    e = subs.add_parser("eval", help="evaluate a checkpoint: k-NN, linear probe, fine-tuning, segmentation, detection")
    protocols = e.add_subparsers(dest="protocol", required=True, parser_class=IntermixedParser)
    for name, text in PROTOCOL_HELP.items():
        p = protocols.add_parser(name, help=text, description=FINETUNE_DESCRIPTION if name == "finetune" else text)
        _add_source_args(p, name)
        _add_protocol_args(p, name)
        add_video_args(p)
        p.set_defaults(func=run)
    segment.add_protocol(protocols)
    detect.add_protocol(protocols)


def _add_source_args(p: argparse.ArgumentParser, name: str) -> None:
    """What every protocol takes: the encoder, the data, the subsets, the device and the result file."""
    p.add_argument("path", nargs="?", help="run directory (newest checkpoint) or checkpoint folder")
    p.add_argument("--random-init", action="store_true", help="a randomly initialised encoder of the same architecture (the floor)")
    p.add_argument("--weights", default="student", choices=["student", "teacher"], help="student (default) or HPM's EMA teacher")
    p.add_argument("--subset", type=count_or_all, default=RECIPE_DEFAULT, metavar="N|all",
                   help="class-balanced subset of at most N train images (knn/linear default 10000; finetune: the recipe's)")
    p.add_argument("--test-subset", type=count_or_all, default=RECIPE_DEFAULT, metavar="N|all",
                   help="class-balanced subset of at most N test images (default 2000; with --labels: all)")
    p.add_argument("--labels", metavar="LABELS",
                   help="few labels, N or P%% (e.g. 600 or 1%%): only N (or P%% of the whole train split) "
                        "class-balanced, seeded (--seed), nested train images keep their label and are the "
                        "train split; replaces --subset"
                        + ("; default recipe few_labels" if name == "finetune" else ""))
    p.add_argument("--precision", help="auto (default), bf16, fp16 (CUDA) or fp32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-dir", help="evaluate on an ImageFolder: DIR/train/<class>/ and DIR/val/<class>/")
    p.add_argument("--data-root", help="Fashion-MNIST folder (default: the checkpoint's)")
    p.add_argument("--img-size", type=int, help="evaluate at another image size (a multiple of the patch size)")
    p.add_argument("--seed", type=int, default=0, help="subsets and random initialisation")
    p.add_argument("--out", help="result JSON (default PATH/eval/<protocol>[_variant].json)" + (
        "; the fine-tune directory (checkpoints, classifier export) is this path without .json"
        if name == "finetune" else ""))
    p.add_argument("--preset", help="architecture of --random-init without PATH (default small)")


def _add_protocol_args(p: argparse.ArgumentParser, name: str) -> None:
    """The flags of one protocol: feature extraction, the probe's and the fine-tune's recipe."""
    if name != "finetune":
        p.add_argument("--batch-size", type=int, default=256, help="images per forward pass when extracting features")
        p.add_argument("--num-workers", type=int, default=0, help="data-loading processes for feature extraction")
    if name != "knn":
        p.add_argument("--epochs", type=int, help="probe epochs (default 100) / fine-tuning epochs (default: the recipe's)")
    if name != "finetune":
        p.add_argument("--pool", default="cls", choices=["cls", "avg"], help="class token (default) or average of the patch tokens")
        p.add_argument("--raw-pixels", action="store_true",
                       help="the same protocol on the normalised pixels (the floor; PATH or --preset sets the image size)")
    if name == "knn":
        p.add_argument("--ks", type=int_list, default=(10, 20, 100, 200), help="comma-separated k values")
        p.add_argument("--temperature", type=float, default=0.07)
    if name == "linear":
        p.add_argument("--blr", type=float, default=0.1, help="base lr; lr = blr * probe batch / 256")
        p.add_argument("--probe-batch-size", type=int, default=256)
        p.add_argument("--warmup-epochs", type=float, default=10.0)
        p.add_argument("--weight-decay", type=float, default=0.0)
    if name == "finetune":
        p.add_argument("--recipe",
                       help="reference (default: 10 epochs on 10 000 images, the study's), few_labels (default "
                            "with --labels: the reference's 100 000 images seen, epochs scaled), small (3 epochs "
                            "on 5 000, a quick check) or paper_vit_b16 (spec section 4)")
        p.add_argument("--config", help="YAML file of fine-tuning keys")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="any fine-tuning key, e.g. blr=5e-4 layer_decay=0.8 mixup=0 ckpt_every_steps=500")
        p.set_defaults(pool="avg")


def run(args: argparse.Namespace) -> int:
    """Evaluate with the protocol of ``args`` and print the summary line and the result file."""
    from hpm.config import build_config
    from hpm.errors import ConfigError
    from hpm.eval.results import summary_line
    from hpm.eval.run import run_eval
    from hpm.export import export_classifier

    overrides_given: list[str] = list(getattr(args, "overrides", []))
    if args.path is not None and "=" in args.path and not Path(args.path).exists():
        overrides_given.insert(0, args.path)  # `hpm eval finetune --random-init blr=1e-3`
        args.path = None
    if args.path is None and not (args.random_init or getattr(args, "raw_pixels", False)):
        raise ConfigError("give a run directory or checkpoint folder (or --random-init for a random encoder)")
    labels = _few_labels(args, overrides_given)
    if getattr(args, "out", None):  # an output that cannot be written is refused before anything is read
        from hpm.engine.outdir import check_output_dir
        from hpm.eval.run import finetune_dir_of

        out = Path(args.out)
        check_output_dir(finetune_dir_of(out) if args.protocol == "finetune" else out.parent, "--out")
    opts = _options(args, labels)
    if args.path is None:  # a random encoder of a preset's architecture
        preset = {"model": {"preset": args.preset}} if args.preset else {}
        opts.cfg = build_config(None, preset)
    elif args.preset:
        raise ConfigError("--preset only applies without a checkpoint; the checkpoint fixes the architecture")
    opts.video = video_options(args, overrides_given)  # a video run's flags and fine-tune recipe
    if args.protocol != "finetune":
        _set_frozen_options(opts, args, overrides_given, labels)
    elif opts.video is None or opts.video.finetune is None:
        opts.finetune = _finetune_config(args, overrides_given, labels)
    record, path = run_eval(args.protocol, args.path, opts, export_classifier=export_classifier)
    if path is not None:
        print(f"{summary_line(record)} -> {path}")
    return 0


def _options(args: argparse.Namespace, labels: LabelCount | None) -> EvalOptions:
    """The options every protocol takes from the flags."""
    from hpm.eval.run import EvalOptions

    return EvalOptions(
        random_init=args.random_init,
        raw_pixels=getattr(args, "raw_pixels", False),
        labels=labels,
        weights=args.weights,
        pool=args.pool,
        precision=args.precision or "auto",
        device=args.device,
        data_dir=args.data_dir,
        data_root=args.data_root,
        img_size=args.img_size,
        seed=args.seed,
        out=args.out,
    )


def _finetune_config(args: argparse.Namespace, overrides_given: list[str], labels: LabelCount | None) -> FinetuneConfig:
    """The fine-tuning recipe: ``--recipe`` (default by ``--labels``), ``--config``, flags and ``key=value``."""
    from hpm.config import parse_overrides
    from hpm.eval.finetune import build_finetune_config

    overrides = parse_overrides(overrides_given)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.subset is not RECIPE_DEFAULT:
        overrides["train_subset"] = args.subset
    if args.test_subset is not RECIPE_DEFAULT:
        overrides["test_subset"] = args.test_subset
    recipe = args.recipe or ("few_labels" if labels is not None else "reference")
    return build_finetune_config(recipe, args.config, overrides)


def _set_frozen_options(
    opts: EvalOptions, args: argparse.Namespace, overrides_given: list[str], labels: LabelCount | None
) -> None:
    """The k-NN's or linear probe's options: feature extraction, subsets and the protocol's own."""
    from hpm.errors import ConfigError
    from hpm.eval.linear import LinearProbeConfig

    if overrides_given:
        raise ConfigError(f"unexpected arguments {overrides_given}; key=value overrides apply to `hpm eval finetune`")
    opts.batch_size, opts.num_workers = args.batch_size, args.num_workers
    opts.train_subset = 10000 if args.subset is RECIPE_DEFAULT else args.subset
    # few labels: evaluated on the whole test split unless told otherwise
    default_test = None if labels is not None else 2000
    opts.test_subset = default_test if args.test_subset is RECIPE_DEFAULT else args.test_subset
    if args.protocol == "knn":
        opts.ks, opts.temperature = args.ks, args.temperature
    else:
        opts.probe = LinearProbeConfig(
            epochs=args.epochs or 100, batch_size=args.probe_batch_size, blr=args.blr,
            warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay, seed=args.seed,
        )


def _few_labels(args: argparse.Namespace, overrides: list[str]) -> LabelCount | None:
    """``--labels N|P%`` parsed, refused together with a train subset (they exclude each other)."""
    from hpm.data.labels import parse_labels
    from hpm.errors import ConfigError

    if args.labels is None:
        return None
    labels = parse_labels(args.labels)
    if args.subset is not RECIPE_DEFAULT or any(o.split("=", 1)[0] == "train_subset" for o in overrides):
        raise ConfigError(f"--labels {labels} chooses the labelled images from the whole train split; "
                          "drop --subset / train_subset")
    return labels
