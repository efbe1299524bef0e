"""``train.compile``: the compiled step traces whole, never recompiles, computes the eager
losses, keeps the checkpoint keys, and a compiled run stopped with SIGTERM resumes exactly.

The step-level tests trace with the ``eager`` backend (TorchDynamo's capture, graph breaks and
guards, without code generation: seconds); the run-level one compiles with Inductor as a run does
(about a minute on a 2-core CPU, once per shape: later processes read Inductor's on-disk cache).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo
from safetensors.torch import load_file

import hpm.engine.compile as compile_mod
from hpm.bench import with_target
from hpm.config import build_config
from hpm.engine.checkpoint import latest_checkpoint, load_state
from hpm.engine.compile import resolve_compile
from hpm.engine.optim import build_optimizer
from hpm.engine.step import PretrainStep
from hpm.engine.train import pretrain
from hpm.losses.targets import build_target, resolve_target_dim
from hpm.models import build_run_model
from tests.conftest import needs_fmnist, pretrain_args, tiny_overrides
from tests.engine.test_preemption import _losses, _wait_for_step

CPU = torch.device("cpu")


def test_auto_compiles_on_cuda_only() -> None:
    assert resolve_compile("auto", torch.device("cuda", 0)) is True
    assert resolve_compile("auto", CPU) is False
    assert resolve_compile(True, CPU) is True and resolve_compile(False, torch.device("cuda")) is False
    assert build_config().train.compile == "auto"
    assert build_config(overrides={"train": {"compile": True}}).train.compile is True


@pytest.fixture
def fresh_dynamo(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A clean TorchDynamo (caches, counters) that captures graphs without compiling them
    (``eager`` backend) and raises on any recompile."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(compile_mod, "BACKEND", "eager")
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    yield
    torch._dynamo.reset()


def _pair(tmp_path: Path, mask: str, target: str, **mask_keys: object) -> tuple[PretrainStep, PretrainStep]:
    """The same tiny model twice, eager and compiled."""
    predictor = "none" if mask == "random" else mask_keys.pop("predictor", "relative")
    cfg = build_config(overrides={
        "model": {"embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1,
                  "decoder_num_heads": 2, "in_chans": 1},
        "mask": {"strategy": mask, **mask_keys},
        "loss": {"predictor": predictor},
        "train": {"batch_size": 8, "precision": "fp32"},
    })
    cfg = with_target(cfg, target, None, tmp_path) if target != "norm_pix" else cfg
    steps = []
    for compiled in (False, True):
        train = cfg.train.model_copy(update={"compile": compiled})  # train.compile chooses, as in a run
        target_fn = build_target(cfg, CPU)
        run_cfg = resolve_target_dim(cfg, target_fn).model_copy(update={"train": train})
        torch.manual_seed(0)
        model = build_run_model(run_cfg)
        steps.append(PretrainStep(run_cfg, model, build_optimizer(model, run_cfg.train, 1e-3), CPU, "fp32",
                                  target=target_fn))
    assert not steps[0].compiled and steps[1].compiled
    return steps[0], steps[1]


@pytest.mark.parametrize(
    ("mask", "target", "mask_keys"),
    [
        pytest.param("random", "norm_pix", {}, id="random-norm_pix"),
        pytest.param("hpm", "hog", {"teacher_view": "masked"}, id="hpm_masked-hog"),  # the efficient default's path
        pytest.param("hpm", "ema", {"teacher_view": "full"}, id="hpm_full-ema"),
        pytest.param("block", "pix", {}, id="block-pix", marks=pytest.mark.slow),
        pytest.param("hpm", "ema", {"teacher_view": "masked", "teacher_views": 2}, id="hpm_2views-ema",
                     marks=pytest.mark.slow),
        pytest.param("hpm", "model", {"teacher_view": "full", "predictor": "absolute"}, id="hpm_full-model-absolute",
                     marks=pytest.mark.slow),
        pytest.param("attention", "norm_pix", {"attention_mode": "hints", "predictor": "none"}, id="attention_hints",
                     marks=pytest.mark.slow),
    ],
)
def test_compiled_step_traces_whole_never_recompiles_and_matches_eager(
    tmp_path: Path, fresh_dynamo: None, mask: str, target: str, mask_keys: dict
) -> None:
    eager, compiled = _pair(tmp_path, mask, target, **mask_keys)
    gen = torch.Generator().manual_seed(1)
    for step in range(4):  # alpha (H) changes, log and non-log steps alternate: no recompile allowed
        images = torch.randn(8, 1, 32, 32, generator=gen)
        num_hard = (0, 3, 6, 9)[step] if mask in ("hpm", "attention") else 0
        outs = []
        for step_fn in (eager, compiled):
            masks, scores = step_fn.generate_mask(images, num_hard)
            outs.append(step_fn.forward_backward(images, masks, scores, num_hard, want_metrics=step % 2 == 1))
            step_fn.optimizer_step(0.99)
        assert outs[0].keys() == outs[1].keys()
        for key in outs[0]:
            torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-6, msg=f"step {step} {key}")
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # it really compiled (student + target)
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()
    assert not any("_orig_mod" in k for k in compiled.model.state_dict())


def test_a_new_batch_size_is_a_recompile_and_the_check_catches_it(tmp_path: Path, fresh_dynamo: None) -> None:
    """What the no-recompile check above would report: shapes are static (``dynamic=False``), so a
    batch made smaller by unreadable images compiles again (here: raises, as the check demands)."""
    _, compiled = _pair(tmp_path, "random", "norm_pix")
    for n in (8, 6):
        images = torch.randn(n, 1, 32, 32)
        masks, _ = compiled.generate_mask(images)
        if n == 8:
            compiled.forward_backward(images, masks)
        else:
            with pytest.raises(torch._dynamo.exc.RecompileError):
                compiled.forward_backward(images, masks)


@pytest.mark.slow
@needs_fmnist
def test_compiled_run_matches_eager_and_resumes_after_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HPM (masked-view teacher) with the HOG target, 3 epochs of 8 steps, compiled with Inductor.

    Tolerance: relative 1e-4 on every step's loss. Inductor fuses and reorders the reductions
    (layer norms, softmax, the loss means), which moves fp32 results by about 1e-7 a step; over
    24 steps of training the largest relative difference measured on an AVX-512 Xeon was
    5.2e-7 (and the stopped-and-resumed compiled run equalled the uninterrupted compiled one
    exactly), so 1e-4 leaves room for other CPUs' vector widths without hiding a real error
    (a wrong mask or target moves the loss by more than 1e-2).
    """
    common = {"loss": {"target": "hog"}, "data": {"subset": 256, "num_workers": 1}, "train": {"epochs": 3}}
    eager = tiny_overrides(tmp_path / "eager", **common)
    pretrain(build_config(overrides=eager))
    reference = _losses(Path(eager["output_dir"]))
    assert len(reference) == 24

    torch._dynamo.reset()
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)  # one compile per pass, for the whole run
    compiled = tiny_overrides(tmp_path / "compiled", **{**common, "train": {"epochs": 3, "compile": True}})
    pretrain(build_config(overrides=compiled))
    torch._dynamo.reset()
    got = _losses(Path(compiled["output_dir"]))
    assert [s for s, _ in got] == [s for s, _ in reference]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in reference], rtol=1e-4)

    stopped = tiny_overrides(tmp_path / "stopped", **{**common, "train": {"epochs": 3, "compile": True}})
    run = Path(stopped["output_dir"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_LOGS": "recompiles"}
    proc = subprocess.Popen([sys.executable, "-m", "hpm.cli", *pretrain_args(stopped)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_step(run, proc, 5, timeout=300)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    stopped_at = load_state(latest_checkpoint(run))["step"]
    assert 5 <= stopped_at < 24
    resumed = subprocess.run([sys.executable, "-m", "hpm.cli", *pretrain_args(stopped)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Recompiling" not in err + resumed.stderr  # TORCH_LOGS=recompiles names any recompile
    after = _losses(run)
    assert [s for s, _ in after] == [s for s, _ in reference]  # no lost or repeated step
    np.testing.assert_allclose([v for _, v in after], [v for _, v in got], rtol=1e-5)  # compiled vs compiled
    np.testing.assert_allclose([v for _, v in after], [v for _, v in reference], rtol=1e-4)
    eager_keys = load_file(str(latest_checkpoint(Path(eager["output_dir"])) / "model.safetensors")).keys()
    assert load_file(str(latest_checkpoint(run) / "model.safetensors")).keys() == eager_keys  # no _orig_mod.
