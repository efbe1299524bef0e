"""``hpm bench``: eager and compiled variants, compile time, the MFU denominator, peak memory."""

from __future__ import annotations

import pytest

import hpm.engine.compile as compile_mod
from hpm.bench import format_bench, run_bench
from hpm.config import build_config
from hpm.peak_flops import datasheet_peak_tflops

TINY = {"model": {"preset": "small", "depth": 1, "decoder_depth": 1}, "train": {"batch_size": 4}}


@pytest.mark.parametrize(
    ("name", "precision", "peak", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4, "H100"),
        ("NVIDIA H100 PCIe", "bf16", 756.5, "H100 PCIe"),
        ("NVIDIA H100 NVL", "bf16", 835.0, "H100 NVL"),
        ("NVIDIA H200", "bf16", 989.4, "H200"),
        ("NVIDIA H200 NVL", "fp16", 835.0, "H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0, "A100"),
        ("NVIDIA A100 80GB PCIe", "fp32", 156.0, "A100"),
    ],
)
def test_datasheet_peaks_match_the_most_specific_name(name: str, precision: str, peak: float, key: str) -> None:
    assert datasheet_peak_tflops(name, precision) == (peak, key)


def test_an_unknown_card_has_no_datasheet_peak() -> None:
    assert datasheet_peak_tflops("NVIDIA GeForce RTX 4090", "bf16") is None
    assert datasheet_peak_tflops("CPU Intel(R) Xeon(R) Processor, 1 threads", "fp32") is None


def test_bench_times_eager_and_compiled_with_the_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    monkeypatch.setattr(compile_mod, "BACKEND", "eager")  # capture only: the plumbing, in seconds
    result = run_bench(build_config(overrides=TINY), ["fp32"], ["mae", "hpm_efficient"], steps=1, warmup=1,
                       compile="both")
    torch._dynamo.reset()
    assert result["variants"] == ["mae", "mae@compiled", "hpm_efficient", "hpm_efficient@compiled"]
    for name in ("mae", "hpm_efficient"):
        eager, compiled = result[name]["fp32"], result[f"{name}@compiled"]["fp32"]
        assert "compile_s" not in eager and compiled["compile_s"] >= 0
        assert compiled["first_step_s"] >= compiled["compile_s"]
        assert compiled["gflop_per_step"] == pytest.approx(eager["gflop_per_step"])  # counted eagerly: same math
        assert result[f"{name}@compiled_speedup"]["fp32"] == pytest.approx(eager["step_s"] / compiled["step_s"])
        assert eager["peak_mem_gb"] is None and compiled["peak_mem_gb"] is None  # CPU: not measured, not faked
    assert result["peak_source"]["fp32"].startswith("measured")
    text = format_bench(result)
    assert "mae@compiled" in text and "eager / compiled step time (fp32)" in text and "n/a" in text


def test_peak_override_is_the_mfu_denominator() -> None:
    result = run_bench(build_config(overrides=TINY), ["fp32"], ["mae"], steps=1, warmup=1, compile="off",
                       peak_tflops=0.5)
    r = result["mae"]["fp32"]
    assert result["peak_gflops"]["fp32"] == 500.0 and result["peak_source"]["fp32"] == "--peak-tflops 0.5"
    assert r["mfu"] == pytest.approx(r["gflop_per_step"] / r["step_s"] / 500.0)
    assert result["measured_peak_gflops"]["fp32"] > 0


def test_unknown_compile_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="valid: auto, off, on, both"):
        run_bench(build_config(overrides=TINY), ["fp32"], ["mae"], compile="sometimes")


def test_attention_variants_are_shaped_like_mae() -> None:
    """``attention`` (no predictor) and ``attention_predictor``: the same fields as ``mae``, a ratio to it,
    and more FLOPs than MAE (the teacher's full-image encoder pass)."""
    result = run_bench(build_config(overrides=TINY), ["fp32"], ["mae", "attention", "attention_predictor"],
                       steps=1, warmup=1, compile="off")
    mae = result["mae"]["fp32"]
    for name in ("attention", "attention_predictor"):
        r = result[name]["fp32"]
        assert set(r) == set(mae)
        assert r["gflop_per_step"] > mae["gflop_per_step"]
        assert r["phases_s"].get("teacher", 0.0) > 0.0
        assert result[f"{name}_over_mae"]["fp32"] == pytest.approx(r["step_s"] / mae["step_s"])
    assert result["attention_predictor"]["fp32"]["gflop_per_step"] > result["attention"]["fp32"]["gflop_per_step"]
    text = format_bench(result)
    assert "attention / mae step time (fp32)" in text and "attention_predictor / mae step time (fp32)" in text
