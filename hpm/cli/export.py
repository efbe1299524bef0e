"""``hpm export``: the encoder (or a fine-tuned classifier) as safetensors for ``timm.create_model``, or the
encoder in MAE's checkpoint layout (``--format mae``)."""

from __future__ import annotations

import argparse


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm export``."""
    x = subs.add_parser(
        "export", help="write the encoder (--finetuned: the fine-tuned classifier) as safetensors for timm.create_model"
    )
    x.add_argument("path", help="run directory (newest checkpoint) or checkpoint folder; with --finetuned: run directory "
                   "(its eval/finetune/), fine-tune directory or fine-tune result .json")
    x.add_argument("--out", help="target .safetensors (default PATH/export/encoder.safetensors, with --finetuned "
                   "PATH/export/classifier.safetensors; with --format mae a .pth, default PATH/export/encoder.pth); "
                   "a .json goes beside it")
    x.add_argument("--format", default="safetensors", choices=["safetensors", "mae"],
                   help="safetensors (default) or mae: the encoder as a .pth holding {'model': state_dict} with timm "
                   "names, MAE's checkpoint layout, which MAE, BEiT and ViTDet fine-tuning code loads")
    x.add_argument("--weights", default="student", choices=["student", "teacher"], help="student (default) or HPM's EMA teacher")
    x.add_argument("--finetuned", action="store_true",
                   help="export the classifier of a finished `hpm eval finetune` (head included) instead of the encoder")
    x.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print how timm loads the file."""
    from hpm.errors import ConfigError
    from hpm.export import export_checkpoint, export_finetuned

    if args.finetuned:
        if args.weights != "student":
            raise ConfigError("--weights applies to the encoder export; a fine-tune records the weights it started from")
        if args.format != "safetensors":
            raise ConfigError("--format mae writes the encoder; a fine-tuned classifier is exported as safetensors")
        result = export_finetuned(args.path, args.out)
        print(
            f"exported the fine-tuned classifier to {result.weights} (+ {result.metadata.name}): "
            f"timm.create_model({result.timm_model!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file='{result.weights}'), **timm_kwargs) loads it, head included"
        )
        return 0
    result = export_checkpoint(args.path, args.out, args.weights, args.format)
    if args.format == "mae":
        print(
            f"exported the {args.weights} encoder to {result.weights} (+ {result.metadata.name}) in MAE's layout: "
            f"torch.load(...)['model'] loads into timm.create_model({result.timm_model!r}, pretrained=False, "
            "**timm_kwargs) and MAE, BEiT and ViTDet fine-tuning code"
        )
        return 0
    print(
        f"exported the {args.weights} encoder to {result.weights} (+ {result.metadata.name}): "
        f"timm.create_model({result.timm_model!r}, pretrained=False, **timm_kwargs) loads it"
    )
    return 0
