"""Fixtures shared by the end-to-end tests: a tiny model, the installed Fashion-MNIST and two-process launches."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hpm.config import FASHION_MNIST_ROOT

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker (two workers share the two cores); subprocesses inherit it
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

HAVE_FASHION_MNIST = (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST, reason="Debian package dataset-fashion-mnist is not installed"
)


def tiny_overrides(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """Config overrides for a small, quick run on a Fashion-MNIST subset in ``tmp_path``."""
    base: dict[str, Any] = {
        "model": {"embed_dim": 64, "depth": 2, "num_heads": 2, "decoder_embed_dim": 32,
                  "decoder_depth": 1, "decoder_num_heads": 2},
        "data": {"subset": 256, "num_workers": 0},
        "train": {"epochs": 2, "batch_size": 32, "log_every": 1, "precision": "fp32",
                  "warmup_epochs": 0.5, "blr": 1.5e-3},
        "eval": {"knn_at_end": False, "figures_at_end": False},
        "output_dir": str(tmp_path / "run"),
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return base


def override_args(overrides: dict[str, Any]) -> list[str]:
    """``section.key=value`` command-line arguments (JSON values) for a :func:`tiny_overrides` dict."""
    return [
        f"{section}.{key}={json.dumps(value)}"
        for section in ("model", "data", "train", "mask", "loss", "eval")
        for key, value in overrides.get(section, {}).items()
    ]


def pretrain_args(overrides: dict[str, Any]) -> list[str]:
    """``hpm pretrain`` arguments for a :func:`tiny_overrides` dict."""
    return ["pretrain", "--output-dir", overrides["output_dir"], *override_args(overrides)]


_TWO_RANKS = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]  # + a module
TORCHRUN = [*_TWO_RANKS, "hpm.cli"]
"""``hpm`` under torchrun with two processes (gloo on the CPU); its arguments follow."""


def ranks_env(**extra: str) -> dict[str, str]:
    """The environment of a two-process run: one thread per rank (the two share the cores) and
    ``PYTHONFAULTHANDLER=1``, so a rank that aborts prints its stack before torchrun's summary."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **extra}


def torchrun_probed(out: Path) -> list[str]:
    """:data:`TORCHRUN` through :mod:`tests.rank_threads`: each rank, when ``hpm`` returns, writes
    the threads it has left to ``out``; its arguments follow."""
    return [*_TWO_RANKS, "tests.rank_threads", str(out), "--"]


def assert_no_gloo_threads(out: Path) -> None:
    """Both ranks of a :func:`torchrun_probed` run ended their process group's threads when ``hpm`` returned."""
    for rank in (0, 1):
        names = json.loads((out / f"threads_rank{rank}.json").read_text())
        assert not [n for n in names if "gloo" in n], f"rank {rank} still runs gloo threads: {names}"


def one_and_two_processes(common: list[str], tmp_path: Path, batch_key: str = "batch_size",
                          batch: int = 4) -> tuple[Path, Path]:
    """Run ``hpm <common>`` once in one process with ``batch_key=batch`` and once under torchrun
    with two gloo processes of ``batch // 2`` each; the two result files (``one.json``, ``two.json``)."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    env = ranks_env()
    subprocess.run([sys.executable, "-m", "hpm.cli", *common, "--out", str(one), f"{batch_key}={batch}"], env=env,
                   check=True, capture_output=True, timeout=300)
    done = subprocess.run([*torchrun_probed(tmp_path), *common, "--out", str(two), f"{batch_key}={batch // 2}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, stderr_tail(done.stderr)
    assert_no_gloo_threads(tmp_path)
    return one, two


def stderr_tail(stderr: str) -> str:
    """The end of a two-process run's stderr, long enough to hold the failing rank's own lines
    (its error or stack) above torchrun's summary of some 2 000 characters."""
    return stderr[-12000:]


def torchrun_worker(launcher: int, rank: int, timeout: float = 60) -> int:
    """The pid of the worker with ``RANK=rank`` among the descendants of a torchrun process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in _descendants(launcher):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ and f"LOCAL_RANK={rank}".encode() in environ:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under {launcher}")


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for line in out:
        if line.strip():
            p, pp = map(int, line.split())
            children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches (the folder index of hpm.data.folder_index) go to a temporary folder, not ~/.cache/hpm;
    subprocesses started by a test inherit it."""
    monkeypatch.setenv("HPM_CACHE_DIR", str(tmp_path_factory.mktemp("hpm-cache")))


@pytest.fixture(autouse=True)
def _hpm_logger_propagates(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that reads ``caplog`` starts with the ``hpm`` logger propagating to the root, where
    ``caplog`` listens: an in-process command before it (``setup_logging``, in a test or a fixture)
    stops it. Set back after the test."""
    logger = logging.getLogger("hpm")
    saved = logger.propagate
    if "caplog" in request.fixturenames:
        logger.propagate = True
    yield
    logger.propagate = saved
