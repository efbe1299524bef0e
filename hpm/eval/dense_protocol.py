"""The frame of ``hpm eval segment`` and ``hpm eval detect``: start the processes, check ``--out``
before anything is read, load, fine-tune on the run engine, and save the record (rank 0) beside
what the task writes. Each task supplies its loading, result file, fine-tune and outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from hpm.engine import distributed as D
from hpm.engine.logger import setup_logging
from hpm.engine.outdir import check_output_dir
from hpm.engine.precision import Resolved, resolve_device, resolve_precision
from hpm.eval.encoder import LoadedEncoder
from hpm.eval.results import write_result
from hpm.eval.run import finetune_dir_of


class ProtocolOptions(Protocol):
    """The options the frame reads (SegmentOptions and DetectOptions have them)."""

    device: str
    precision: str
    out: str | Path | None
    recipe: Any  # the task's recipe, with its own ``precision``


@dataclass(frozen=True)
class DenseTask:
    """What a dense evaluation supplies to :func:`run_dense_protocol`.

    ``load()`` gives the encoder and the checked data; ``result_file(encoder)`` the JSON file;
    ``train(encoder, data, device, precision, dist, run_dir)`` the result and trained model;
    ``write_outputs(model, encoder, data, result_file)`` (rank 0) the paths it wrote.
    """

    name: str  # the record's "protocol"
    load: Callable[[], tuple[LoadedEncoder, Any]]
    result_file: Callable[[LoadedEncoder], Path]
    train: Callable[[LoadedEncoder, Any, torch.device, Resolved, D.DistInfo, Path], tuple[dict[str, Any], nn.Module]]
    write_outputs: Callable[[nn.Module, LoadedEncoder, Any, Path], dict[str, str]]


def run_dense_protocol(task: DenseTask, opts: ProtocolOptions) -> tuple[dict[str, Any], Path | None]:
    """Run ``task`` in this process (one of a torchrun job or alone) and save its record.

    The fine-tune keeps its checkpoints in the result file's path without ``.json``
    (:func:`~hpm.eval.run.finetune_dir_of`) and resumes from them when run again (a finished one
    only reports its result). Nothing is written before the data are checked.

    Returns:
        ``(record, file)``: the saved record and the JSON file (None on ranks other than 0).
    """
    start = time.perf_counter()
    dist = D.init_distributed("cuda" if torch.cuda.is_available() and opts.device != "cpu" else "cpu")
    setup_logging(dist.is_main)
    try:
        device = resolve_device(opts.device, dist.local_rank)
        if opts.out is not None:
            check_output_dir(finetune_dir_of(opts.out), "--out")  # before anything is loaded
        enc, data = task.load()
        target = task.result_file(enc)
        precision = resolve_precision(opts.recipe.precision if opts.precision == "auto" else opts.precision, device)
        result, model = task.train(enc, data, device, precision, dist, finetune_dir_of(target))
        record = {
            "protocol": task.name, "source": enc.describe(), "data": data.describe(), "result": result,
            "device": str(device), "precision": precision, "seconds": round(time.perf_counter() - start, 3),
        }
        if not dist.is_main:
            return record, None
        record.update(task.write_outputs(model, enc, data, target))
        return record, write_result(target, record)
    finally:
        D.shutdown_distributed()
