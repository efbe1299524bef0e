"""The ``hpm`` command: ``hpm pretrain``, ``bench``, ``data``, ``eval``, ``export``, ``study``, ``visualize`` and ``plot``.

One module per command (its parser and its handler), registered in :data:`hpm.cli.parser.COMMANDS`.
"""

from hpm.cli.main import main
from hpm.cli.parser import build_parser

__all__ = ["build_parser", "main"]
