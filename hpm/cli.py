"""The ``hpm`` command: ``hpm pretrain``, ``bench``, ``data``, ``eval``, ``export``, ``study``, ``visualize`` and ``plot``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from hpm.config import TargetName
from hpm.errors import HpmError, Preempted

if TYPE_CHECKING:
    from hpm.data.labels import LabelCount

TARGETS: tuple[str, ...] = get_args(TargetName)  # loss.target values


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
        "teacher_view": ("mask", "teacher_view"),
        "target": ("loss", "target"),
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
    from hpm.pretrain import run_pretrain

    cfg = build_config(args.config, _flag_overrides(args))
    run_pretrain(cfg)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hpm.bench import format_bench, run_bench
    from hpm.config import build_config
    from hpm.errors import ConfigError

    if args.data is not None:
        return cmd_bench_data(args)
    precisions = [p.strip() for p in (args.precision or "auto").split(",") if p.strip()]
    args.precision = None  # a list here, not one config value
    overrides = _flag_overrides(args)
    overrides.setdefault("train", {}).setdefault("batch_size", 8)
    cfg = build_config(args.config, overrides)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    targets = [t.strip() for t in (args.bench_targets or "").split(",") if t.strip()]
    bad = sorted(set(targets) - set(TARGETS))
    if bad:
        raise ConfigError(f"unknown --target {', '.join(bad)}; valid: pix, hog, ema, model")
    result = run_bench(cfg, precisions, variants, args.steps, args.warmup, args.mask, targets, args.target_weights,
                       args.compile, args.peak_tflops)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    """``hpm bench --data DIR|SHARDS``: the data loader alone (hpm/bench_data.py)."""
    from hpm.bench_data import format_data_bench, run_data_bench
    from hpm.config import build_config

    args.precision = None
    overrides = _flag_overrides(args)
    overrides.setdefault("data", {})["data_dir"] = args.data
    cfg = build_config(args.config, overrides)
    result = run_data_bench(cfg, args.workers, args.feed, args.images, cfg.train.batch_size)
    print(json.dumps(result, indent=2) if args.json else format_data_bench(result))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``hpm data pack DIR --out SHARDS``: an image folder as WebDataset shards (hpm/data/pack.py)."""
    from hpm.data.pack import PackOptions, pack_folder

    options = PackOptions(max_side=args.max_side, quality=args.quality, keep_original=args.keep_original,
                          samples_per_shard=args.shard_size)
    index = pack_folder(args.src, args.out, options, workers=args.workers)
    print(f"packed {args.src} -> {index.parent} (index {index.name})")
    return 0


_RECIPE_DEFAULT = object()  # --subset not given: the protocol's default


def _count_or_all(text: str) -> int | None:
    """``--subset`` values: a positive count, or ``all`` for the whole split."""
    if text.lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of images or 'all', got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_eval(args: argparse.Namespace) -> int:
    from hpm.config import build_config, parse_overrides
    from hpm.eval.finetune import build_finetune_config
    from hpm.eval.linear import LinearProbeConfig
    from hpm.eval.results import summary_line
    from hpm.errors import ConfigError
    from hpm.eval.run import EvalOptions, run_eval

    overrides_given: list[str] = list(getattr(args, "overrides", []))
    if args.path is not None and "=" in args.path and not Path(args.path).exists():
        overrides_given.insert(0, args.path)  # `hpm eval finetune --random-init blr=1e-3`
        args.path = None
    raw_pixels = getattr(args, "raw_pixels", False)
    if args.path is None and not (args.random_init or raw_pixels):
        raise ConfigError("give a run directory or checkpoint folder (or --random-init for a random encoder)")
    labels = _few_labels(args, overrides_given)
    opts = EvalOptions(
        random_init=args.random_init,
        raw_pixels=raw_pixels,
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
    if args.path is None:  # a random encoder of a preset's architecture
        preset = {"model": {"preset": args.preset}} if args.preset else {}
        opts.cfg = build_config(None, preset)
    elif args.preset:
        raise ConfigError("--preset only applies without a checkpoint; the checkpoint fixes the architecture")
    if args.protocol == "finetune":
        overrides = parse_overrides(overrides_given)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.subset is not _RECIPE_DEFAULT:
            overrides["train_subset"] = args.subset
        if args.test_subset is not _RECIPE_DEFAULT:
            overrides["test_subset"] = args.test_subset
        recipe = args.recipe or ("few_labels" if labels is not None else "reference")
        opts.finetune = build_finetune_config(recipe, args.config, overrides)
    else:
        if overrides_given:
            raise ConfigError(f"unexpected arguments {overrides_given}; key=value overrides apply to `hpm eval finetune`")
        opts.batch_size, opts.num_workers = args.batch_size, args.num_workers
        opts.train_subset = 10000 if args.subset is _RECIPE_DEFAULT else args.subset
        # few labels: evaluated on the whole test split unless told otherwise
        default_test = None if labels is not None else 2000
        opts.test_subset = default_test if args.test_subset is _RECIPE_DEFAULT else args.test_subset
        if args.protocol == "knn":
            opts.ks, opts.temperature = args.ks, args.temperature
        else:
            opts.probe = LinearProbeConfig(
                epochs=args.epochs or 100, batch_size=args.probe_batch_size, blr=args.blr,
                warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay, seed=args.seed,
            )
    record, path = run_eval(args.protocol, args.path, opts)
    if path is not None:
        print(f"{summary_line(record)} -> {path}")
    return 0


def _few_labels(args: argparse.Namespace, overrides: list[str]) -> LabelCount | None:
    """``--labels N|P%`` parsed, refused together with a train subset (they exclude each other)."""
    from hpm.data.labels import parse_labels
    from hpm.errors import ConfigError

    if args.labels is None:
        return None
    labels = parse_labels(args.labels)
    if args.subset is not _RECIPE_DEFAULT or any(o.split("=", 1)[0] == "train_subset" for o in overrides):
        raise ConfigError(f"--labels {labels} chooses the labelled images from the whole train split; "
                          "drop --subset / train_subset")
    return labels


def cmd_export(args: argparse.Namespace) -> int:
    from hpm.errors import ConfigError
    from hpm.export import export_checkpoint, export_finetuned

    if args.finetuned:
        if args.weights != "student":
            raise ConfigError("--weights applies to the encoder export; a fine-tune records the weights it started from")
        result = export_finetuned(args.path, args.out)
        print(
            f"exported the fine-tuned classifier to {result.weights} (+ {result.metadata.name}): "
            f"timm.create_model({result.timm_model!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file='{result.weights}'), **timm_kwargs) loads it, head included"
        )
        return 0
    result = export_checkpoint(args.path, args.out, args.weights)
    print(
        f"exported the {args.weights} encoder to {result.weights} (+ {result.metadata.name}): "
        f"timm.create_model({result.timm_model!r}, pretrained=False, **timm_kwargs) loads it"
    )
    return 0


class _IntermixedParser(argparse.ArgumentParser):
    """Lets positionals and options mix, as users type them: ``hpm eval finetune RUN --epochs 1
    blr=1e-3``, ``hpm pretrain --subset 10000 train.blr=3e-4 --output-dir runs/x eval.figures_at_end=false``.
    A parser with sub-commands of its own (``hpm eval``, ``hpm data``) parses as usual."""

    _busy = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        if self._busy or self._subparsers is not None:  # intermixed parsing calls back in here
            return super().parse_known_args(args, namespace)
        self._busy = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._busy = False


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint: k-NN, linear probe or fine-tuning")
    protocols = e.add_subparsers(dest="protocol", required=True, parser_class=_IntermixedParser)
    helps = {
        "knn": "weighted k-NN (T=0.07) on frozen features, k in 10, 20, 100, 200",
        "linear": "linear probe (BatchNorm + linear) on cached frozen features",
        "finetune": "end-to-end fine-tuning (layer decay, drop path, mixup/cutmix, smoothing); re-run to resume",
    }
    finetune_description = (
        "End-to-end fine-tuning as a timm ViT classifier. Checkpoints go to the fine-tune directory, the result "
        "file's path without .json (default PATH/eval/finetune/; --out X/ft.json: X/ft/), after every epoch and "
        "every ckpt_every_steps=N optimizer steps; the newest 2 are kept. Re-running the same command resumes an "
        "interrupted fine-tune at its next step (bit-identical with num_workers=0) and only reports a finished "
        "one; another recipe or encoder is refused. SIGTERM / SIGUSR1 checkpoint and exit 143 / 138. At the end "
        "the classifier is written as DIR/classifier.safetensors + classifier.json for timm.create_model."
    )
    for name, text in helps.items():
        p = protocols.add_parser(name, help=text, description=finetune_description if name == "finetune" else text)
        p.add_argument("path", nargs="?", help="run directory (newest checkpoint) or checkpoint folder")
        p.add_argument("--random-init", action="store_true", help="a randomly initialised encoder of the same architecture (the floor)")
        p.add_argument("--weights", default="student", choices=["student", "teacher"], help="student (default) or HPM's EMA teacher")
        p.add_argument("--subset", type=_count_or_all, default=_RECIPE_DEFAULT, metavar="N|all",
                       help="class-balanced subset of at most N train images (knn/linear default 10000; finetune: the recipe's)")
        p.add_argument("--test-subset", type=_count_or_all, default=_RECIPE_DEFAULT, metavar="N|all",
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
            p.add_argument("--ks", type=_int_list, default=(10, 20, 100, 200), help="comma-separated k values")
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
        p.set_defaults(func=cmd_eval)

    x = sub.add_parser(
        "export", help="write the encoder (--finetuned: the fine-tuned classifier) as safetensors for timm.create_model"
    )
    x.add_argument("path", help="run directory (newest checkpoint) or checkpoint folder; with --finetuned: run directory "
                   "(its eval/finetune/), fine-tune directory or fine-tune result .json")
    x.add_argument("--out", help="target .safetensors (default PATH/export/encoder.safetensors, with --finetuned "
                   "PATH/export/classifier.safetensors); a .json goes beside it")
    x.add_argument("--weights", default="student", choices=["student", "teacher"], help="student (default) or HPM's EMA teacher")
    x.add_argument("--finetuned", action="store_true",
                   help="export the classifier of a finished `hpm eval finetune` (head included) instead of the encoder")
    x.set_defaults(func=cmd_export)


def _split_study_args(args: argparse.Namespace) -> None:
    """``--only mae base.train.epochs=1``: a ``key=value`` after ``--only`` is an override (a
    variant name has no ``=``), wherever it sits."""
    if args.only:
        args.overrides = [*[v for v in args.only if "=" in v], *args.overrides]
        args.only = [v for v in args.only if "=" not in v] or None


def cmd_study(args: argparse.Namespace) -> int:
    from hpm.study import load_study, parse_study_overrides, run_study, write_report

    _split_study_args(args)
    spec = load_study(args.config, parse_study_overrides(args.overrides))
    if args.list:
        from hpm.study import plan

        for job in plan(spec):
            print(f"{job.variant.name:24s} seed {job.seed}  {job.run_dir}")
        return 0
    out = write_report(spec) if args.report_only else run_study(spec, args.only, args.max_runs)
    print(f"report: {out / 'results.md'}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from hpm.viz.panels import visualize

    out = args.out if args.out is not None else Path(args.path) / "figures"
    result = visualize(
        args.path, out, indices=args.indices, files=args.images, split=args.split, num_masks=args.num_masks,
        alpha=args.alpha, seed=args.seed, data_dir=args.data_dir, data_root=args.data_root, filename=args.name,
    )
    width, height = result.size_px
    print(
        f"{result.rows} image(s), {result.panels} panels, {width}x{height} px ({result.seconds:.1f} s) -> {result.path}"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hpm.viz.plot import plot_runs

    out = args.out if args.out is not None else Path(args.runs[0]) / "figures" / "curves.png"
    print(f"{len(args.runs)} run(s) -> {plot_runs(args.runs, out, args.names)}")
    return 0


def _index_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated image indices, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one image index")
    return values


def _add_viz_parsers(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "visualize", help="panels per image: input, real and predicted per-patch loss, HPM mask, reconstruction",
        description="Figure-2-style panels of a checkpoint, one row per image, one colour scale per map type.",
    )
    v.add_argument("path", help="run directory (newest checkpoint) or checkpoint folder")
    v.add_argument("--out", help="output folder (default PATH/figures)")
    v.add_argument("--name", default="patches.png", help="file name of the PNG (default patches.png)")
    v.add_argument("--indices", type=_index_list, metavar="I,J,...",
                   help="images of the data set's split by index (default: 8 taken round-robin over the classes, unless --images)")
    v.add_argument("--images", nargs="+", metavar="FILE", help="image files (converted to the model's channels)")
    v.add_argument("--split", choices=["test", "train"],
                   help="split of --indices (default test; val/ for image folders)")
    v.add_argument("--num-masks", type=int, default=10, help="M random masks averaged for the real loss (default 10)")
    v.add_argument("--alpha", type=float, help="α of the HPM mask (default: the run's last α)")
    v.add_argument("--seed", type=int, default=0, help="seeds the masks")
    v.add_argument("--data-dir", help="take the images from this ImageFolder (DIR/val/ or DIR/train/)")
    v.add_argument("--data-root", help="take the images from this Fashion-MNIST folder")
    v.set_defaults(func=cmd_visualize)

    p = sub.add_parser("plot", help="training curves of one or more runs from metrics.jsonl")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of hpm pretrain")
    p.add_argument("--out", help="PNG file (default RUN_DIR/figures/curves.png of the first run)")
    p.add_argument("--names", nargs="+", metavar="NAME", help="legend label per run (default: directory names)")
    p.set_defaults(func=cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpm", description="Masked image modeling with hard patches mining (HPM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)

    p = sub.add_parser("pretrain", help="pre-train MAE / HPM; re-run to resume")
    _add_config_args(p)
    p.add_argument("--output-dir", help="run directory (resumes if it holds a checkpoint)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int, help="seeded, class-balanced subset of N training images")
    p.add_argument("--mask", choices=["random", "block", "hpm", "attention"])
    p.add_argument("--loss-predictor", choices=["relative", "absolute", "none"])
    p.add_argument("--target", choices=TARGETS,
                   help="reconstruction target (default norm_pix); model needs loss.target_weights=FILE")
    p.add_argument("--teacher-view", choices=["full", "masked"],
                   help="what HPM's EMA teacher scores: the whole image (the paper's) or random partial views")
    p.add_argument("--data-dir", help="ImageFolder root with train/ (and optional val/)")
    p.add_argument("--data-root", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    p.set_defaults(func=cmd_pretrain)

    b = sub.add_parser("bench", help="time one training step: step time, img/s, FLOPs, MFU")
    _add_config_args(b)
    b.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    b.add_argument("--mask", default="random", choices=["random", "block"], help="MAE's masking")
    b.add_argument("--variants", default="mae,hpm,hpm_masked,hpm_efficient,attention,attention_predictor",
                   help="comma-separated: mae, hpm (full-view teacher), hpm_masked, hpm_efficient, "
                        "random_predictor (random masks + loss predictor, no teacher), attention (AttMask: the "
                        "EMA encoder's full-image [CLS] attention chooses the mask), attention_predictor (that, "
                        "with the one-block loss predictor trained)")
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
    b.set_defaults(func=cmd_bench, precision=None)

    d = sub.add_parser("data", help="prepare data: `hpm data pack DIR --out SHARDS/`")
    actions = d.add_subparsers(dest="action", required=True, parser_class=_IntermixedParser)
    k = actions.add_parser(
        "pack", help="write an image folder (train/, val/) as WebDataset tar shards with a random-access index",
        description="Packs DIR/train/<class>/ (and DIR/val/) into SHARDS/<split>-NNNNNN.tar plus SHARDS/hpm-shards.json; "
                    "--data-dir SHARDS then pre-trains and evaluates from them. Re-running resumes (finished shards "
                    "are skipped); a pack of another folder or with other options is refused.",
    )
    k.add_argument("src", metavar="DIR", help="image folder with train/<class>/ (and val/<class>/)")
    k.add_argument("--out", required=True, metavar="SHARDS", help="pack folder (created)")
    k.add_argument("--max-side", type=int, default=320, help="longer side of re-encoded images (default 320 px)")
    k.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images (default 90)")
    k.add_argument("--keep-original", action="store_true", help="store every file's original bytes, not re-encoded")
    k.add_argument("--shard-size", type=int, default=2000, help="samples per shard (default 2000)")
    k.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")
    k.set_defaults(func=cmd_data)

    s = sub.add_parser("study", help="pre-train and evaluate variants x seeds (configs/study/); re-run to continue")
    s.add_argument("config", help="study YAML, e.g. configs/study/fmnist_reference.yaml")
    s.add_argument("overrides", nargs="*", metavar="key=value",
                   help="study keys, e.g. base.train.epochs=5 runs_dir=runs/quick report_dir=runs/quick/report")
    s.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    s.add_argument("--max-runs", type=int, help="start at most N pre-training runs (0: only evaluate finished runs and rebuild the report)")
    s.add_argument("--report-only", action="store_true", help="rebuild the report from finished runs")
    s.add_argument("--list", action="store_true", help="print the planned runs in order and exit")
    s.set_defaults(func=cmd_study)

    _add_eval_parsers(sub)
    _add_viz_parsers(sub)
    _add_debug_flag(parser)
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every command (the leaves of the sub-command tree): tracebacks on the console."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.add_argument("--debug", action="store_true",
                            help="print the traceback of an error on the console too (else: only in the run's train.log)")
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
            _add_debug_flag(child)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpm`` console command.

    Every error ends the command with one line on stderr and a non-zero status: 2 for an error
    the user can fix (:class:`~hpm.errors.HpmError`, a full disk included), 1 for anything
    else (its traceback goes to the run's ``train.log``, and to the console with ``--debug`` or
    ``HPM_DEBUG=1``), ``128 + signal`` after a stop signal's checkpoint, 130 for Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("HPM_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except Preempted as exc:  # SIGTERM / SIGUSR1: checkpointed, exit 128 + signal (143, 138)
        print(f"hpm {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"hpm {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line and a status, never a hang
        return _report_error(args.command, exc, debug)


def _report_error(command: str, exc: Exception, debug: bool) -> int:
    """Print one line for ``exc`` (its traceback too with ``debug``), log it to the run's log
    file unless the run did, and return the exit status."""
    import traceback

    from hpm.engine.integrity import is_disk_full
    from hpm.engine.logger import log_failure_to_file

    expected = isinstance(exc, HpmError)
    if expected:
        message = str(exc)
    elif is_disk_full(exc):
        expected = True
        message = f"the disk is full ({exc}). Free some space, then re-run the same command to resume"
    else:
        message = f"{type(exc).__name__}: {str(exc).strip()}"
        if "DataLoader worker" in message:
            message += " (a data-loading process died: out of memory? `dmesg` tells; re-running resumes from the last checkpoint)"
    files = getattr(exc, "hpm_logged", None) or log_failure_to_file(exc, f"error: {message}", traceback=not expected)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    elif not expected:
        message += f" (traceback in {files[0]}; --debug prints it here)" if files else " (--debug prints the traceback)"
    print(f"hpm {command}: error: {message}", file=sys.stderr)
    return 2 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
