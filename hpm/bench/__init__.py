"""``hpm bench``: time one training step of MAE and HPM, with FLOPs and MFU.

``--target hog,ema,model`` adds, for every variant, the same step with that reconstruction
target (``<variant>+<target>``) and reports its step time over the variant's norm-pix step
(``<variant>+<target>_over_<variant>``); see :mod:`hpm.bench.targets`.

MFU is measured against the matrix-multiply peak of the same precision on the same device,
timed in the same run (a large square matmul), so the ratio does not depend on a datasheet; on a
GPU of :data:`~hpm.peak_flops.PEAK_TFLOPS` (A100, H100, H200) against its datasheet peak, or
against ``peak_tflops`` when given (``--peak-tflops``). ``peak_source`` says which.

``compile="both"`` (``--compile``) times every variant eagerly and compiled
(``<variant>@compiled``, ``train.compile``), with the compile time (the first step's time over
a compiled step) and ``<variant>@compiled_speedup`` (eager step time / compiled step time).
On CUDA each variant's peak memory is reported (its resident tensors plus the peak of its
step's transient ones); on the CPU it is not measured (null).

``hpm bench --data`` times the data loader alone (:mod:`hpm.bench.data`).
"""

from hpm.bench.device import device_name, measure_peak_gflops
from hpm.bench.report import format_bench
from hpm.bench.run import run_bench
from hpm.bench.targets import with_target
from hpm.bench.timing import BenchResult, bench_precision
from hpm.bench.variants import (
    COMPILE_MODES,
    COMPILED,
    DEFAULT_VARIANTS,
    PLAIN_VARIANTS,
    PREDICTOR_VARIANTS,
    VARIANTS,
    variant_config,
)

_with_target = with_target  # the name tests/engine/test_compile.py imports

__all__ = [
    "COMPILED",
    "COMPILE_MODES",
    "DEFAULT_VARIANTS",
    "PLAIN_VARIANTS",
    "PREDICTOR_VARIANTS",
    "VARIANTS",
    "BenchResult",
    "bench_precision",
    "device_name",
    "format_bench",
    "measure_peak_gflops",
    "run_bench",
    "variant_config",
    "with_target",
]
