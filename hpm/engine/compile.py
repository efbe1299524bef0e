"""``train.compile``: whether the step's passes run through ``torch.compile``, and how.

What is compiled are functions, never modules or the optimizer: the student's forward and
losses, the teacher's scoring pass and the reconstruction target (see
:class:`~hpm.engine.step.PretrainStep`). The models stay plain ``nn.Module`` objects, so
checkpoints keep their ``state_dict`` keys (no ``_orig_mod.`` prefix) and DDP wraps the
student as before; under DDP the compiled student pass breaks its graph at the DDP call and
TorchDynamo compiles the module's forward with its DDP optimizer (one graph per gradient bucket).

Shapes are static (``dynamic=False``): every step of a run has the same batch and mask sizes. A
batch made smaller by unreadable images compiles once more for that size (at most
``torch._dynamo.config.recompile_limit`` sizes, then that pass runs eagerly).
"""

from __future__ import annotations

from typing import Callable, Literal, TypeVar

import torch

CompileSetting = bool | Literal["auto"]
F = TypeVar("F", bound=Callable)
BACKEND = "inductor"  # torch.compile's backend; the fast tests trace with "aot_eager" instead


def resolve_compile(setting: CompileSetting, device: torch.device) -> bool:
    """``auto``: compile on CUDA, not on the CPU.

    On one core of an AVX-512 Xeon compiling the small preset's step took 1-2 minutes per
    variant and made it about 1.05x faster (0.86-1.24x; docs/benchmarks.md), which a CPU run of
    a few minutes does not win back. On a GPU a step is short and bound by kernel launches and
    memory traffic, which fusion removes, and runs last hours (not yet measured here).
    """
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def maybe_compile(fn: F, enabled: bool) -> F:
    """``torch.compile(fn)`` with static shapes when ``enabled``, else ``fn`` itself."""
    if not enabled:
        return fn
    return torch.compile(fn, dynamic=False, backend=BACKEND)  # type: ignore[return-value]
