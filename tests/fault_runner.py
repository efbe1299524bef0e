"""Runs ``hpm`` with a fault injected, for the fault-injection suite (tests/test_fault_injection.py).

    python -m tests.fault_runner [--nan-at-step N] [--enospc-at-checkpoint K] [--kill-worker-at-step N] -- ARGS

The faults are made where they would arise, and everything else is the real command:
``--nan-at-step`` turns the loss of optimizer step N (0-based, pre-training or fine-tune) into
NaN, as a diverging run does; ``--enospc-at-checkpoint`` makes the K-th checkpoint write of this
process fail half-way through ``state.pt`` with ``OSError(ENOSPC)``, as a full disk does where
no small tmpfs can be mounted; ``--kill-worker-at-step`` SIGKILLs the DataLoader worker processes
after step N, as the kernel's OOM killer would.
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any


def _nan_at(step: int) -> None:
    import timm.layers  # noqa: F401 - before patching torch-level code used by the fine-tune
    from torch import nn

    from hpm.engine.step import PretrainStep

    real = PretrainStep.forward_backward
    calls = {"pretrain": 0}

    def forward_backward(self: PretrainStep, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        if calls["pretrain"] == step:
            out = {**out, "loss": out["loss"] * float("nan")}
        calls["pretrain"] += 1
        return out

    PretrainStep.forward_backward = forward_backward  # type: ignore[method-assign]

    from hpm.eval.finetune.task import Finetuning

    real_step = Finetuning.train_step

    def train_step(run: Finetuning, *args: Any, **kwargs: Any) -> None:
        if run.step == step:
            original = run.loss_fn
            run.loss_fn = lambda logits, targets: original(logits, targets) * float("nan")
            try:
                real_step(run, *args, **kwargs)
            finally:
                run.loss_fn = original
        else:
            real_step(run, *args, **kwargs)

    Finetuning.train_step = train_step  # type: ignore[method-assign]
    assert isinstance(nn.Module, type)


def _enospc_at(k: int) -> None:
    from hpm.engine import checkpoint

    real = checkpoint.write_durable_with
    seen = {"state": 0}

    def write(path: Path, writer: Any) -> dict[str, Any]:
        entry = real(path, writer)
        seen["state"] += 1
        if seen["state"] == k:  # the disk filled up half-way through state.pt
            with open(path, "r+b") as f:
                f.truncate(entry["bytes"] // 2)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return entry

    checkpoint.write_durable_with = write


def _kill_workers_after(step: int) -> None:
    from hpm.engine.step import PretrainStep

    real = PretrainStep.optimizer_step
    calls = {"n": 0}

    def optimizer_step(self: PretrainStep, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
        return out

    PretrainStep.optimizer_step = optimizer_step  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nan-at-step", type=int)
    parser.add_argument("--enospc-at-checkpoint", type=int)
    parser.add_argument("--kill-worker-at-step", type=int)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    if opts.nan_at_step is not None:
        _nan_at(opts.nan_at_step)
    if opts.enospc_at_checkpoint is not None:
        _enospc_at(opts.enospc_at_checkpoint)
    if opts.kill_worker_at_step is not None:
        _kill_workers_after(opts.kill_worker_at_step)
    from hpm.cli import main as hpm_main

    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    return hpm_main(args)


if __name__ == "__main__":
    sys.exit(main())
