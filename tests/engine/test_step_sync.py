"""A step outside log steps reads nothing back to the host (GPU hygiene).

On CUDA ``torch.cuda.set_sync_debug_mode`` would say so; on the CPU the guard below records
every way a step could wait for the device: Python-level reads (``.item()``, ``.tolist()``,
``.cpu()``, ``.numpy()``, ``bool()`` / ``float()`` / ``int()`` of a tensor) and, through a
dispatch mode, the operators behind them and those whose output shape depends on the data
(``nonzero``, ``masked_select``, boolean-mask indexing, ``unique``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hpm.config import build_config
from hpm.engine.ema import ema_decay_at
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.engine.train import StepLog
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.models import build_run_model

aten = torch.ops.aten
_SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.unique_dim, aten._unique2,
             aten.unique_consecutive, aten.nonzero_static}
_PY_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class _SyncRecorder(TorchDispatchMode):
    """Records operators that copy a value to the host or size their output by the data."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket in _SYNC_OPS:
            self.calls.append(str(func))
        if func.overloadpacket is aten.index and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
        ):
            self.calls.append("boolean-mask indexing")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_reads() -> Iterator[list[str]]:
    """Yields the list of host reads made inside the block."""
    calls: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in _PY_READS}

    def spy(name: str):  # type: ignore[no-untyped-def]
        original = originals[name]

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(f"Tensor.{name}")
            return original(self, *args, **kwargs)

        return wrapper

    try:
        for name in _PY_READS:
            setattr(torch.Tensor, name, spy(name))
        with _SyncRecorder(calls):
            yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize(
    "read",
    [
        lambda x: x.sum().item(),
        lambda x: float(x.sum()),
        lambda x: bool(x.sum() > 0),
        lambda x: x[x > 0],
        lambda x: torch.nonzero(x),
        lambda x: x.tolist(),
        lambda x: x.cpu(),
        lambda x: int(x.argmax()),
    ],
    ids=["item", "float", "bool", "bool-index", "nonzero", "tolist", "cpu", "int"],
)
def test_the_guard_sees_every_kind_of_host_read(read) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(4, 5)
    with host_reads() as calls:
        read(x)
    assert calls, "the guard missed a host read"
    with host_reads() as calls:
        torch.argsort(x, dim=1).gather(1, torch.zeros(4, 1, dtype=torch.long)) * 2.0  # device-side only
    assert calls == []


def _step(mask: str, target: str, teacher_view: str = "masked", precision: str = "fp32") -> PretrainStep:
    cfg = build_config(overrides={
        "model": {"embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1,
                  "decoder_num_heads": 2, "in_chans": 1},
        "mask": {"strategy": mask, "teacher_view": teacher_view},
        "loss": {"target": target, "predictor": "none" if mask == "random" else "relative"},
        "train": {"batch_size": 8, "precision": precision, "clip_grad": 1.0},
    })
    target_fn = build_target(cfg, torch.device("cpu"))
    cfg = resolve_target_dim(cfg, target_fn)
    model = build_run_model(cfg)
    return PretrainStep(cfg, model, build_optimizer(model, cfg.train, 1e-3), torch.device("cpu"), precision,
                        target=target_fn)


@pytest.mark.parametrize(
    ("mask", "target", "view", "precision"),
    [
        ("random", "norm_pix", "masked", "fp32"),
        ("block", "pix", "masked", "fp32"),
        ("hpm", "norm_pix", "masked", "fp32"),
        ("hpm", "ema", "full", "fp32"),
        ("hpm", "hog", "masked", "bf16"),
        ("attention", "norm_pix", "full", "bf16"),
        ("attention", "ema", "full", "fp32"),
    ],
)
def test_a_step_outside_log_steps_reads_nothing_back_to_the_host(mask: str, target: str, view: str, precision: str) -> None:
    step_fn = _step(mask, target, view, precision)
    log = StepLog(SimpleNamespace(device=torch.device("cpu"), cfg=step_fn.cfg))  # the loop's per-step bookkeeping
    images = torch.randn(8, 1, 32, 32)
    num_hard = 6 if mask in ("hpm", "attention") else 0
    for step in range(3):  # the first step creates the optimizer state: check later ones too
        with host_reads() as calls:
            masks, scores = step_fn.generate_mask(images, num_hard)
            out = step_fn.forward_backward(images, masks, scores, num_hard, want_metrics=False)
            step_fn.optimizer_step(ema_decay_at(step_fn.cfg.ema, step / 10, 2))
            log.add(out, step, images.shape[0])
        assert calls == [], f"step {step} read from the device: {calls}"
    with host_reads() as calls:  # a log step may read (metrics), and the guard sees it
        log.check_finite()
    assert calls
