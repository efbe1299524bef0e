"""``hpm bench --data`` on a tiny folder and its shards, and scripts/make_imagenet_like.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hpm.cli import main
from hpm.data.pack import PackOptions, pack_folder

from .test_shards import make_folder

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_imagenet_like.py"


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_bench_data_runs(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = make_folder(tmp_path / "images")
    data = folder
    if kind == "shards":
        data = tmp_path / "shards"
        pack_folder(folder, data, PackOptions(samples_per_shard=10), progress=False)
    argv = ["bench", "--data", str(data), "--images", "24", "--batch-size", "8", "--feed", "5000",
            "--workers", "2", "--json", "model.img_size=32", "model.patch_size=4"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    one, many = result["per_worker"], result["workers"]
    assert result["img_size"] == 32 and result["draft"] is True
    assert one["workers"] == 0 and one["images"] == 24 and one["img_per_s"] > 0
    assert many["workers"] == 2 and many["images"] == 48 and many["img_per_s"] > 0
    assert result["workers_to_feed"] == -(-5000 // one["img_per_s"])
    assert main([a for a in argv if a != "--json"]) == 0
    text = capsys.readouterr().out
    assert "1 worker (in-process):" in text and "to feed 5000 img/s: about" in text and "extrapolation" in text


def test_make_imagenet_like_writes_seeded_jpegs(tmp_path: Path) -> None:
    run = [sys.executable, str(SCRIPT), "--classes", "2", "--images", "2", "--val", "1"]
    out = subprocess.run([*run, str(tmp_path / "a")], capture_output=True, text=True, check=True).stdout
    subprocess.run([*run, str(tmp_path / "b")], capture_output=True, check=True)
    files = sorted((tmp_path / "a").rglob("*.JPEG"))
    assert len(files) == 6 and "6 images" in out
    assert sorted(p.relative_to(tmp_path / "a") for p in files)[0] == Path("train/n00000000/n00000000_0.JPEG")
    for path in files:
        with Image.open(path) as image:
            assert image.size == (500, 375) and image.format == "JPEG" and image.mode == "RGB"
        assert 60_000 < path.stat().st_size < 160_000  # about ImageNet's ~110 KB
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()  # seeded
