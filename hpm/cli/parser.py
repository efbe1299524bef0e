"""The ``hpm`` argument parser: one line per command in :data:`COMMANDS`, each a module of
this package with its ``add_parser(subs)`` and its handler."""

from __future__ import annotations

import argparse

from hpm.cli import bench, data, export, plot, pretrain, study, visualize
from hpm.cli import eval as evaluate  # the module's name is the command's; `eval` is also a builtin
from hpm.cli.args import IntermixedParser

COMMANDS = (
    pretrain,
    bench,
    data,
    study,
    evaluate,
    export,
    visualize,
    plot,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; a parsed command line's ``func`` is its handler."""
    parser = argparse.ArgumentParser(
        prog="hpm", description="Masked image modeling with hard patches mining (HPM)."
    )
    subs = parser.add_subparsers(dest="command", required=True, parser_class=IntermixedParser)
    for command in COMMANDS:
        command.add_parser(subs)
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
