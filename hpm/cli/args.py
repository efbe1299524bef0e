"""Argument helpers shared by the commands: the parser class, config flags, value types."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from hpm.config import TargetName

TARGETS: tuple[str, ...] = get_args(TargetName)  # loss.target values
RECIPE_DEFAULT = object()  # --subset not given: the protocol's default


class IntermixedParser(argparse.ArgumentParser):
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


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The flags of a command that builds a pre-training config, and its ``section.key=value`` overrides."""
    p.add_argument("--config", help="YAML file of config overrides (see configs/)")
    p.add_argument("--preset", help="model preset: small, small64, vit_s16, vit_b16, vit_l16, vit_h14; "
                   "video: video_small, video_b16")
    p.add_argument("--batch-size", type=int, help="images per process per micro-step")
    p.add_argument("--precision", help="auto, bf16, fp16 (CUDA) or fp32")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value",
        help="any other config key, e.g. train.blr=3e-4 mask.schedule=fixed mask.alpha=1",
    )


# flag attribute -> (config section, key)
_FLAG_KEYS: dict[str, tuple[str, str]] = {
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


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides of the given flags and ``section.key=value`` arguments (these win).

    Args:
        args: The parsed command line of ``hpm pretrain`` or ``hpm bench``.

    Returns:
        A nested mapping for :func:`hpm.config.build_config`.
    """
    from hpm.config import parse_overrides

    out: dict[str, Any] = {}
    for attr, (section, key) in _FLAG_KEYS.items():
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


def add_dense_eval_args(p: argparse.ArgumentParser) -> None:
    """The flags ``hpm eval segment`` and ``hpm eval detect`` share: schedule, labels, the encoder, where to run."""
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--labels", type=int, metavar="N", help="only N training images (drawn by --seed)")
    p.add_argument("--random-init", action="store_true", help="a randomly initialised encoder (the floor)")
    p.add_argument("--preset", help="architecture of --random-init without PATH (default small)")
    p.add_argument("--weights", default="student", choices=["student", "teacher"],
                   help="student (default) or HPM's EMA teacher")
    p.add_argument("--precision", help="auto (default: the recipe's), bf16, fp16 (CUDA) or fp32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="the labelled images and the random initialisation")


def dense_eval_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` recipe overrides of ``hpm eval segment|detect``; a first one typed where the
    path goes (``hpm eval segment --random-init lr=1e-3``) is taken as an override and the path cleared.

    Raises:
        ConfigError: ``--preset`` given with a checkpoint, which fixes the architecture.
    """
    from pathlib import Path

    from hpm.errors import ConfigError

    overrides = list(args.overrides)
    if args.path is not None and "=" in args.path and not Path(args.path).exists():
        overrides.insert(0, args.path)
        args.path = None
    if args.path is not None and args.preset:
        raise ConfigError("--preset only applies without a checkpoint; the checkpoint fixes the architecture")
    return overrides


def count_or_all(text: str) -> int | None:
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


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers (``--ks 10,20``)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def index_list(text: str) -> list[int]:
    """Comma-separated image indices (``--indices 0,5,9``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated image indices, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one image index")
    return values


def comma_list(text: str | None) -> list[str]:
    """The non-empty items of a comma-separated value (None: none)."""
    return [v.strip() for v in (text or "").split(",") if v.strip()]
