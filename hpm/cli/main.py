"""The entry point of the ``hpm`` command: parse, dispatch, one line per error and an exit status."""

from __future__ import annotations

import os
import sys

from hpm.cli.parser import build_parser
from hpm.errors import HpmError, Preempted


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpm`` console command.

    Every error ends the command with one line on stderr and a non-zero status: 2 for an error
    the user can fix (:class:`~hpm.errors.HpmError`, a full disk included), 1 for anything
    else (its traceback goes to the run's ``train.log``, and to the console with ``--debug`` or
    ``HPM_DEBUG=1``), ``128 + signal`` after a stop signal's checkpoint (130 for a first
    Ctrl-C during training), 130 for a Ctrl-C that stopped at once.
    """
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("HPM_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except Preempted as exc:  # SIGTERM / SIGUSR1 / first Ctrl-C: checkpointed, exit 128 + signal (143, 138, 130)
        print(f"hpm {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # outside training, or a second Ctrl-C (Interrupted says where to resume)
        print(f"hpm {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line and a status, never a hang
        return _report_error(args.command, exc, debug)


def _lost_a_data_loader_worker(exc: BaseException) -> bool:
    """Whether ``exc`` is a broken connection to a DataLoader worker: a worker killed while it hands
    a batch over (shared memory) surfaces as a reset connection inside the loader, not as
    PyTorch's "DataLoader worker ... exited unexpectedly"."""
    import traceback

    if not isinstance(exc, (ConnectionError, EOFError)):
        return False
    return any("torch/utils/data" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


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
        if _lost_a_data_loader_worker(exc):
            message = f"a DataLoader worker died while handing over a batch ({message})"
        if "DataLoader worker" in message:
            message += " (a data-loading process died: out of memory? `dmesg` tells; re-running resumes from the last checkpoint)"
    files = getattr(exc, "hpm_logged", None) or log_failure_to_file(exc, f"error: {message}", traceback=not expected)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    elif not expected:
        message += f" (traceback in {files[0]}; --debug prints it here)" if files else " (--debug prints the traceback)"
    print(f"hpm {command}: error: {message}", file=sys.stderr)
    return 2 if expected else 1
