"""``hpm plot``: training curves of one or more runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm plot``."""
    p = subs.add_parser("plot", help="training curves of one or more runs from metrics.jsonl")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of hpm pretrain")
    p.add_argument("--out", help="PNG file (default RUN_DIR/figures/curves.png of the first run)")
    p.add_argument("--names", nargs="+", metavar="NAME", help="legend label per run (default: directory names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plot the curves and print where they went."""
    from hpm.viz.plot import plot_runs

    out = args.out if args.out is not None else Path(args.runs[0]) / "figures" / "curves.png"
    print(f"{len(args.runs)} run(s) -> {plot_runs(args.runs, out, args.names)}")
    return 0
