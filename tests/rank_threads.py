"""Runs ``hpm`` in a torchrun rank, then records the threads the rank still has.

    python -m torch.distributed.run ... -m tests.rank_threads OUT_DIR -- ARGS

The command is the real ``hpm ARGS``; when it returns, the names of the rank's threads (from
``/proc/self/task``) are written to ``OUT_DIR/threads_rank<RANK>.json``, before any garbage
collection. A process group freed only at the interpreter's finalization leaves gloo's threads
(``gloo_tcp_loop``, ``pt_gloo_runloop``) alive there, and a gloo thread that needs the GIL then
aborts the process. tests/engine/test_distributed.py, tests/engine/test_preemption.py and
tests/eval/test_finetune_cli_resume.py check that none is left.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def thread_names() -> list[str]:
    """The names of this process's threads, sorted."""
    return sorted((task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m tests.rank_threads OUT_DIR -- ARGS")
    out, args = argv[0], argv[2:]
    from hpm.cli import main as hpm_main

    code = hpm_main(args)
    rank = os.environ.get("RANK", "0")
    Path(out, f"threads_rank{rank}.json").write_text(json.dumps(thread_names()))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
