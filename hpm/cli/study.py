"""``hpm study``: pre-train and evaluate variants x seeds; re-running continues."""

from __future__ import annotations

import argparse


def add_parser(subs: argparse._SubParsersAction) -> None:
    """Register ``hpm study``."""
    s = subs.add_parser("study", help="pre-train and evaluate variants x seeds (configs/study/); re-run to continue")
    s.add_argument("config", help="study YAML, e.g. configs/study/fmnist_reference.yaml")
    s.add_argument("overrides", nargs="*", metavar="key=value",
                   help="study keys, e.g. base.train.epochs=5 runs_dir=runs/quick report_dir=runs/quick/report")
    s.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    s.add_argument("--max-runs", type=int, help="start at most N pre-training runs (0: only evaluate finished runs and rebuild the report)")
    s.add_argument("--report-only", action="store_true",
                   help="rebuild the report (and a dense study's pictures) from finished runs")
    s.add_argument("--list", action="store_true", help="print the planned runs in order and exit")
    s.set_defaults(func=run)


def split_study_args(args: argparse.Namespace) -> None:
    """``--only mae base.train.epochs=1``: a ``key=value`` after ``--only`` is an override (a
    variant name has no ``=``), wherever it sits."""
    if args.only:
        args.overrides = [*[v for v in args.only if "=" in v], *args.overrides]
        args.only = [v for v in args.only if "=" not in v] or None


def run(args: argparse.Namespace) -> int:
    """Run (or only list, or only report) the study."""
    from hpm.study import finish_report, load_study, parse_study_overrides, run_study

    split_study_args(args)
    spec = load_study(args.config, parse_study_overrides(args.overrides))
    if args.list:
        from hpm.study import plan

        for job in plan(spec):
            print(f"{job.variant.name:24s} seed {job.seed}  {job.run_dir}")
        return 0
    out = finish_report(spec) if args.report_only else run_study(spec, args.only, args.max_runs)
    print(f"report: {out / 'results.md'}")
    return 0
