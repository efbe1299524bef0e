"""The ``hpm`` command: config errors before any work, bench JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpm.cli import main


def test_unknown_key_stops_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["pretrain", "--output-dir", str(out), "train.epoch=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown key 'train.epoch'" in err and "epochs" in err and "batch_size" in err
    assert not out.exists()


def test_invalid_value_lists_valid_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pretrain", "--output-dir", str(tmp_path / "r"), "mask.schedule=sideways"])
    err = capsys.readouterr().err
    assert code == 2 and "easy_to_hard" in err and "hard_to_easy" in err


def test_bad_override_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "epochs"]) == 2
    assert "section.key=value" in capsys.readouterr().err


def test_mask_flag_choices() -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--mask", "diagonal"])


def test_console_script_help() -> None:
    out = subprocess.run([sys.executable, "-m", "hpm.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "pretrain" in out.stdout and "bench" in out.stdout


def test_bench_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "bench", "--preset", "small", "--batch-size", "4", "--steps", "1", "--warmup", "1",
        "--precision", "fp32", "--json", "model.depth=1", "model.decoder_depth=1",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"device", "peak_gflops", "mae", "hpm", "hpm_over_mae"} <= set(result)
    assert result["peak_gflops"]["fp32"] > 0
    for variant in ("mae", "hpm"):
        r = result[variant]["fp32"]
        assert {"step_s", "img_per_s", "gflop_per_step", "mfu", "phases_s"} <= set(r)
        assert r["step_s"] > 0 and r["gflop_per_step"] > 0 and 0 < r["mfu"]
    assert result["hpm"]["fp32"]["gflop_per_step"] > result["mae"]["fp32"]["gflop_per_step"]
    assert {"teacher", "masks", "forward", "backward", "optimizer", "ema"} <= set(result["hpm"]["fp32"]["phases_s"])
