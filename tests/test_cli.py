"""The ``hpm`` command: config errors before any work, bench JSON shape, visualize and plot."""

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
        "--precision", "fp32", "--json", "model.depth=1", "model.decoder_depth=2",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"device", "peak_gflops", "mae", "hpm", "hpm_masked", "hpm_efficient", "hpm_over_mae",
            "hpm_masked_over_mae", "hpm_efficient_over_mae"} <= set(result)
    assert result["peak_gflops"]["fp32"] > 0
    for variant in ("mae", "hpm", "hpm_masked", "hpm_efficient"):
        r = result[variant]["fp32"]
        assert {"step_s", "img_per_s", "gflop_per_step", "mfu", "phases_s"} <= set(r)
        assert r["step_s"] > 0 and r["gflop_per_step"] > 0 and 0 < r["mfu"]
    gflop = {v: result[v]["fp32"]["gflop_per_step"] for v in ("mae", "hpm", "hpm_masked", "hpm_efficient")}
    # the masked-view teacher encodes a quarter of the tokens; the efficient mode also has a shallower predictor
    assert gflop["hpm"] > gflop["hpm_masked"] > gflop["mae"] and gflop["hpm_masked"] > gflop["hpm_efficient"]
    assert {"teacher", "masks", "forward", "backward", "optimizer", "ema"} <= set(result["hpm"]["fp32"]["phases_s"])


def _png(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(path)
    return path


def test_visualize_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from tests.eval.conftest import save_random_run, tiny_config
    from tests.viz.conftest import fake_records, write_metrics

    run = save_random_run(tmp_path / "run", tiny_config())
    files = [str(_png(tmp_path / f"{i}.png")) for i in range(2)]
    assert main(["visualize", str(run), "--images", *files, "--num-masks", "2", "--alpha", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("2 image(s), 10 panels, 1080x600 px") and out.endswith(str(run / "figures" / "patches.png"))
    with Image.open(run / "figures" / "patches.png") as image:
        assert image.size == (1080, 600)

    write_metrics(run, fake_records(4, 2, log_every=1))
    other = write_metrics(tmp_path / "other", fake_records(4, 2, log_every=2, predictor=False))
    assert main(["plot", str(run), str(other), "--out", str(tmp_path / "c.png"), "--names", "hpm", "mae"]) == 0
    assert capsys.readouterr().out.strip() == f"2 run(s) -> {tmp_path / 'c.png'}"
    with Image.open(tmp_path / "c.png") as image:
        assert image.size == (1300, 700)
    assert main(["plot", str(run)]) == 0
    assert (run / "figures" / "curves.png").is_file()


def test_visualize_and_plot_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.viz.conftest import write_metrics

    assert main(["visualize", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "hpm visualize: error:" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing"), "--out", str(tmp_path / "c.png")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    write_metrics(tmp_path / "starting", [{"epoch": 0, "step": 1, "skipped_images": 0}])
    assert main(["plot", str(tmp_path / "starting"), "--out", str(tmp_path / "c.png")]) == 2
    assert "none of the plotted metrics" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["visualize", str(tmp_path), "--indices", "a,b"])


def test_bench_target_reports_the_ratio_to_the_norm_pix_step(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "bench", "--variants", "mae", "--target", "hog,ema,model", "--batch-size", "2", "--steps", "1",
        "--warmup", "0", "--precision", "fp32", "--json", "model.depth=1", "model.decoder_depth=1",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["variants"] == ["mae", "mae+hog", "mae+ema", "mae+model"]
    for target in ("hog", "ema", "model"):
        assert result[f"mae+{target}_over_mae"]["fp32"] > 0
    assert "random copy" in result["targets"]["model"]
    # the feature targets add an encoder pass: more FLOPs than the pixel step
    assert result["mae+ema"]["fp32"]["gflop_per_step"] > result["mae"]["fp32"]["gflop_per_step"]
    assert main(["bench", "--target", "colour"]) == 2
    assert "unknown --target colour" in capsys.readouterr().err
