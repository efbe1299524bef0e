"""A tiny study of task evaluations: pre-training on unlabelled scenes, segmentation and detection of
every run and of random-init floors, the figures in results.json and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpm.cli import main
from hpm.data.scenes import SceneOptions, write_scenes
from hpm.errors import ConfigError
from hpm.study import load_study, run_study
from hpm.study.spec import variant_config
from hpm.study.collect import collect
from tests.conftest import HAVE_FASHION_MNIST

pytestmark = pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian package dataset-fashion-mnist is not installed")

SEG = {"crop_size": 32, "batch_size": 4, "iters": 2, "warmup_iters": 0, "decoder_channels": 8, "precision": "fp32"}
DET = {"image_size": 32, "batch_size": 2, "iters": 2, "warmup_iters": 0, "pyramid_channels": 8, "box_head_dim": 16,
       "mask_head_dim": 8, "rpn_proposals": 20, "roi_batch": 16, "precision": "fp32"}


def _write(tmp_path: Path) -> Path:
    scenes = tmp_path / "scenes"
    write_scenes(scenes, SceneOptions(num_train=24, num_val=6, size=32, seed=0), progress=False)
    data = str(scenes)
    spec: dict[str, Any] = {
        "name": "tiny_dense", "runs_dir": str(tmp_path / "runs"), "report_dir": str(tmp_path / "report"),
        "base": {"model": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
                           "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
                 "data": {"data_dir": data, "num_workers": 0},
                 "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0.5, "precision": "fp32", "log_every": 1},
                 "eval": {"knn_at_end": False}},
        "eval": {"classification": False, "ranking_images": 4, "ranking_masks": 2, "task_floor_seeds": [0, 1],
                 "tasks": [
                     {"name": "seg_linear", "task": "segment", "data_dir": data, "overrides": {**SEG, "head": "linear"},
                      "figures": {"seg_linear_miou": "miou"}},
                     {"name": "det_l8", "task": "detect", "data_dir": data, "labels": 8, "overrides": DET,
                      "figures": {"det_box_ap_l8": "box.AP", "det_mask_ap_l8": "mask.AP"}}]},
        "compare_to": ["mae"],
        "variants": [{"name": "mae", "config": "configs/ablations/mae.yaml", "seeds": [0]},
                     {"name": "hpm", "config": "configs/ablations/efficient.yaml", "seeds": [0]}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_tiny_scenes_study_fine_tunes_every_run_and_floor_and_reports_them(tmp_path: Path) -> None:
    path = _write(tmp_path)
    spec = load_study(path)
    run_study(spec)
    runs = tmp_path / "runs"
    hpm = runs / "hpm" / "seed_0" / "eval"
    seg = json.loads((hpm / "study_seg_linear.json").read_text())
    det = json.loads((hpm / "study_det_l8.json").read_text())
    assert seg["result"]["recipe"]["head"] == "linear" and seg["result"]["recipe"]["seed"] == 0
    assert det["data"]["labels"] == 8 and det["data"]["labels_seed"] == 0
    floor = json.loads((runs / "floors" / "random_init_det_l8_seed_1.json").read_text())
    assert floor["source"]["random_init"] and floor["data"] == det["data"]  # the same labelled images
    assert floor["result"]["recipe"]["seed"] == 1
    assert not (hpm / "study_knn.json").exists()  # no class labels: no k-NN or probe
    rank = json.loads((hpm / "study_ranking.json").read_text())
    assert rank["available"] and rank["images"] == 4  # the teacher ranked validation scenes
    found = json.loads((hpm / "study_objectness.json").read_text())
    assert found["images"] == 4 and 0 <= found["teacher_object_auc"] <= 1 and 0 <= found["real_object_auc"] <= 1
    assert "teacher_object_auc" not in json.loads((runs / "mae" / "seed_0" / "eval" / "study_objectness.json").read_text())
    from PIL import Image

    with Image.open(tmp_path / "report" / "dense_predictions.png") as picture:
        assert picture.size[0] > picture.size[1]  # 4 scenes x (scene, truth, 2 predictions, 2 loss maps)
    with Image.open(tmp_path / "report" / "det_predictions.png") as picture:
        assert picture.size == (968, 968)  # 4 scenes x (truth, mae, hpm, random init seed 0): 2.2 in at 110 dpi

    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results == json.loads(json.dumps(collect(spec)))
    row = next(v for v in results["variants"] if v["variant"] == "hpm")
    assert row["seg_linear_miou"]["per_seed"] == {"0": seg["result"]["miou"]}
    assert row["det_box_ap_l8"]["per_seed"]["0"] == pytest.approx(100 * det["result"]["box"]["AP"])
    floors = results["floors"]["random_init"]["seg_linear_miou"]
    assert floors["n"] == 2 and set(floors["per_seed"]) == {"0", "1"}
    diff = next(d for d in results["tasks"]["differences"] if d["variant"] == "hpm")
    mae = next(r for r in results["runs"] if r["variant"] == "mae")
    assert diff["seg_linear_miou_minus_mae"] == pytest.approx(seg["result"]["miou"] - mae["seg_linear_miou"])
    assert diff["seg_linear_miou_minus_random_init"] == pytest.approx(seg["result"]["miou"] - floors["per_seed"]["0"])
    table = (tmp_path / "report" / "results.md").read_text()
    assert "| encoder | seeds | `seg_linear_miou` | `det_box_ap_l8` | `det_mask_ap_l8` |" in table
    assert "| random init | 2/2 |" in table and "k-NN@" not in table
    assert "Does the teacher find the objects?" in table
    assert row["teacher_object_auc"]["per_seed"] == {"0": found["teacher_object_auc"]}

    # a narrowed call redoes nothing and keeps every figure of the report
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("study_*.json")}
    assert main(["study", str(path), "eval.tasks_only=[seg_linear]", "eval.task_floor_seeds=[0]"]) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("study_*.json")} == before
    assert json.loads((tmp_path / "report" / "results.json").read_text())["floors"] == results["floors"]


def test_bad_task_evaluations_are_refused_before_any_work(tmp_path: Path) -> None:
    path = _write(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["eval"]["tasks"][0]["overrides"]["nope"] = 1
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="eval.tasks 'seg_linear': invalid segmentation configuration"):
        load_study(path)
    spec["eval"]["tasks"][0]["overrides"].pop("nope")
    spec["eval"]["tasks"][1]["data_dir"] = str(tmp_path / "missing")
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="hpm data scenes"):  # when the study starts, before any work
        run_study(load_study(path))
    with pytest.raises(ConfigError, match="tasks_only names unknown"):
        load_study(_write(tmp_path / "again"), {"eval": {"tasks_only": ["nope"]}})
    assert not (tmp_path / "runs").exists()


def test_the_shipped_dense_study() -> None:
    raw = yaml.safe_load(Path("configs/study/scenes_dense.yaml").read_text())
    keys = {k for d in raw["eval"]["tasks"] for k in d["figures"]}
    assert keys == {"seg_linear_miou", "seg_upernet_miou", "seg_upernet_miou_l1000", "det_box_ap", "det_mask_ap",
                    "det_box_ap_l1000"}
    assert raw["base"]["model"]["preset"] == "small64" and raw["eval"]["classification"] is False
    assert {v["name"]: v["seeds"] for v in raw["variants"]} == {"mae": [0, 1, 2], "hpm": [0, 1, 2]}


def test_a_tiny_video_study_evaluates_both_label_kinds_and_its_floors(tmp_path: Path) -> None:
    from hpm.data.video import MovingOptions, write_moving
    from tests.data.video.conftest import HAVE_FFMPEG

    if not HAVE_FFMPEG:
        pytest.skip("needs FFmpeg")
    clips = tmp_path / "moving"
    write_moving(clips, MovingOptions(num_train=24, num_val=8, frames=8, size=16), progress=False)
    tiny = {"model": {"preset": "video_small", "num_frames": 8, "img_size": 16, "patch_size": 4, "embed_dim": 32,
                      "depth": 2, "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2},
            "data": {"data_dir": str(clips), "channels": 1, "num_workers": 0},
            "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0.5, "precision": "fp32", "log_every": 1},
            "eval": {"knn_at_end": False}}
    finetune = {"epochs": 1, "batch_size": 8, "eval_batch_size": 8, "precision": "fp32", "num_workers": 0}
    spec = {"name": "tiny_video", "runs_dir": str(tmp_path / "runs"), "report_dir": str(tmp_path / "report"),
            "base": tiny, "compare_to": ["videomae"],
            "eval": {"classification": False, "ranking_images": 0, "task_floor_seeds": [0], "tasks": [
                {"name": "knn_class", "task": "knn", "label": "class", "test_clips": 1,
                 "figures": {"knn_top1_class": "top1.10"}},
                {"name": "knn_motion", "task": "knn", "label": "motion", "test_clips": 1,
                 "figures": {"knn_top1_motion": "top1.10"}},
                {"name": "finetune_motion", "task": "finetune", "label": "motion", "test_clips": 1,
                 "overrides": finetune, "figures": {"finetune_top1_motion": "top1"}}]},
            "variants": [{"name": "videomae", "config": "configs/ablations/videomae.yaml", "seeds": [0]},
                         {"name": "hpm", "config": "configs/ablations/video_hpm.yaml", "seeds": [0]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_study(load_study(path))
    runs = tmp_path / "runs"
    knn = json.loads((runs / "hpm" / "seed_0" / "eval" / "study_knn_motion.json").read_text())
    assert knn["data"]["label"] == "motion" and knn["source"]["random_init"] is False
    tuned = json.loads((runs / "floors" / "random_init_finetune_motion_seed_0.json").read_text())
    assert tuned["source"]["random_init"] and tuned["result"]["recipe"]["epochs"] == 1
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    row = next(v for v in results["variants"] if v["variant"] == "hpm")
    assert row["knn_top1_motion"]["per_seed"]["0"] == knn["result"]["top1"]["10"]
    assert results["floors"]["random_init"]["finetune_top1_motion"]["n"] == 1
    assert "knn_top1_class_minus_videomae" in next(d for d in results["tasks"]["differences"] if d["variant"] == "hpm")


def test_the_shipped_video_study() -> None:
    spec = load_study("configs/study/moving_fmnist.yaml")
    keys = {k for t in spec.eval.tasks for k in t.figures}
    assert keys == {"knn_top1_class", "knn_top1_motion", "linear_top1_class", "linear_top1_motion",
                    "finetune_top1_motion"}
    assert {v.name: v.seeds for v in spec.variants} == {"videomae": [0, 1, 2], "hpm": [0, 1, 2], "hpm_tube": [0]}
    cfg = variant_config(spec, spec.variants[1], 0)
    assert cfg.model.num_frames == 16 and cfg.mask.strategy == "hpm" and cfg.mask.ratio == 0.9
