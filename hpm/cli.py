"""The ``hpm`` command: ``hpm pretrain`` and ``hpm bench``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hpm.errors import HpmError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of config overrides (see configs/)")
    p.add_argument("--preset", help="model preset: small, vit_s16, vit_b16, vit_l16, vit_h14")
    p.add_argument("--batch-size", type=int, help="images per process per micro-step")
    p.add_argument("--precision", help="auto, bf16, fp16 (CUDA) or fp32")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value",
        help="any other config key, e.g. train.blr=3e-4 mask.schedule=fixed mask.alpha=1",
    )


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from hpm.config import parse_overrides

    out: dict[str, Any] = {}
    flags = {
        "preset": ("model", "preset"),
        "batch_size": ("train", "batch_size"),
        "precision": ("train", "precision"),
        "seed": ("train", "seed"),
        "epochs": ("train", "epochs"),
        "subset": ("data", "subset"),
        "mask": ("mask", "strategy"),
        "loss_predictor": ("loss", "predictor"),
        "data_dir": ("data", "data_dir"),
        "data_root": ("data", "root"),
    }
    for attr, (section, key) in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if getattr(args, "output_dir", None):
        out["output_dir"] = args.output_dir
    extra = parse_overrides(args.overrides)
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def cmd_pretrain(args: argparse.Namespace) -> int:
    from hpm.config import build_config
    from hpm.engine.train import pretrain

    cfg = build_config(args.config, _flag_overrides(args))
    pretrain(cfg)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hpm.bench import format_bench, run_bench
    from hpm.config import build_config

    precisions = [p.strip() for p in (args.precision or "auto").split(",") if p.strip()]
    args.precision = None  # a list here, not one config value
    overrides = _flag_overrides(args)
    overrides.setdefault("train", {}).setdefault("batch_size", 8)
    cfg = build_config(args.config, overrides)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = run_bench(cfg, precisions, variants, args.steps, args.warmup, args.mask)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpm", description="Masked image modeling with hard patches mining (HPM)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train MAE / HPM; re-run to resume")
    _add_config_args(p)
    p.add_argument("--output-dir", help="run directory (resumes if it holds a checkpoint)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int, help="seeded, class-balanced subset of N training images")
    p.add_argument("--mask", choices=["random", "block", "hpm"])
    p.add_argument("--loss-predictor", choices=["relative", "absolute", "none"])
    p.add_argument("--data-dir", help="ImageFolder root with train/ (and optional val/)")
    p.add_argument("--data-root", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    p.set_defaults(func=cmd_pretrain)

    b = sub.add_parser("bench", help="time one training step: step time, img/s, FLOPs, MFU")
    _add_config_args(b)
    b.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    b.add_argument("--mask", default="random", choices=["random", "block"], help="MAE's masking")
    b.add_argument("--variants", default="mae,hpm", help="comma-separated: mae, hpm")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench, precision=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpm`` console command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HpmError as exc:
        print(f"hpm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hpm {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
