"""``hpm bench``: time one training step (or, with ``--data``, the data loader alone)."""

from __future__ import annotations

import argparse
import json

from hpm.cli.args import TARGETS, add_config_args, comma_list, flag_overrides


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm bench``."""
    b = subs.add_parser("bench", help="time one training step: step time, img/s, FLOPs, MFU")
    add_config_args(b)
    b.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    b.add_argument("--mask", default="random", choices=["random", "block"], help="MAE's masking")
    b.add_argument("--variants", default="mae,hpm,hpm_masked,hpm_efficient,attention,attention_predictor",
                   help="comma-separated: mae, hpm (full-view teacher), hpm_masked, hpm_efficient, "
                        "random_predictor (random masks + loss predictor, no teacher), attention (AttMask: the "
                        "EMA encoder's full-image [CLS] attention chooses the mask), attention_predictor (that, "
                        "with the one-block loss predictor trained); video presets: videomae (tube masks, no "
                        "predictor), hpm_tube (HPM on tubes, full-view teacher)")
    b.add_argument("--target", dest="bench_targets", metavar="T[,T...]",
                   help="also time each variant with these reconstruction targets (pix, hog, ema, model) "
                        "and report the step-time ratio to its norm-pix step")
    b.add_argument("--target-weights", help="weights of the model target (default: a random copy of the encoder)")
    b.add_argument("--compile", nargs="?", const="both", default="auto", choices=["auto", "off", "on", "both"],
                   help="torch.compile the step: auto (default, as train.compile: on for CUDA), off, on, or "
                        "both (a bare --compile, written after any key=value): every variant eager and compiled, "
                        "with the compile time")
    b.add_argument("--peak-tflops", type=float, metavar="TFLOPS",
                   help="MFU against this peak (default: the GPU's datasheet peak for A100/H100/H200, "
                        "else the matmul peak measured in the run)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--data", metavar="DIR|SHARDS",
                   help="time the pre-training data loader alone on this folder or pack, at model.img_size")
    b.add_argument("--workers", type=int, default=1, help="with --data: also time N loader worker processes")
    b.add_argument("--feed", type=float, metavar="IMG_PER_S", help="with --data: workers needed to feed this rate")
    b.add_argument("--images", type=int, default=512, help="with --data: images timed per worker")
    b.set_defaults(func=run, precision=None)


def run(args: argparse.Namespace) -> int:
    """Time the training step of each variant at each precision and print the table (or JSON)."""
    from hpm.bench import format_bench, run_bench
    from hpm.config import build_config
    from hpm.errors import ConfigError

    if args.data is not None:
        return run_data(args)
    precisions = comma_list(args.precision or "auto")
    args.precision = None  # a list here, not one config value
    overrides = flag_overrides(args)
    overrides.setdefault("train", {}).setdefault("batch_size", 8)
    cfg = build_config(args.config, overrides)
    variants = comma_list(args.variants)
    targets = comma_list(args.bench_targets)
    bad = sorted(set(targets) - set(TARGETS))
    if bad:
        raise ConfigError(f"unknown --target {', '.join(bad)}; valid: pix, hog, ema, model")
    result = run_bench(cfg, precisions, variants, args.steps, args.warmup, args.mask, targets, args.target_weights,
                       args.compile, args.peak_tflops)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def run_data(args: argparse.Namespace) -> int:
    """``hpm bench --data DIR|SHARDS``: time the data loader alone (:mod:`hpm.bench.data`)."""
    from hpm.bench.data import format_data_bench, run_data_bench
    from hpm.config import build_config

    args.precision = None
    overrides = flag_overrides(args)
    overrides.setdefault("data", {})["data_dir"] = args.data
    cfg = build_config(args.config, overrides)
    result = run_data_bench(cfg, args.workers, args.feed, args.images, cfg.train.batch_size)
    print(json.dumps(result, indent=2) if args.json else format_data_bench(result))
    return 0
