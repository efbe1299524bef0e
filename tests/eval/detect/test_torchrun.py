"""``hpm eval detect`` under torchrun (two gloo processes) against one process with the same
global batch.

Mask R-CNN draws which anchors and proposals train the RPN and the RoI heads
(torchvision's BalancedPositiveNegativeSampler) from each process's own generator, so two
processes with 2 images each do not draw what one process with 4 draws: the runs match in their
data, steps and schedule, and their losses and APs agree closely, not exactly. Within one process
count, a run resumes exactly (``test_cli_resume.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import one_and_two_processes

SAME_WORK = ("--epochs", "3", "--precision", "fp32", "--labels", "8", "scale_range=[1.0,1.0]", "hflip=0",
             "warmup_iters=0", "score_thresh=0.001", "eval_every=3")


def _record(out: Path) -> dict:
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_train_as_one(encoder_run: Path, scenes: Path, tmp_path: Path) -> None:
    common = ["eval", "detect", str(encoder_run), "--data-dir", str(scenes), *SAME_WORK]
    one, two = one_and_two_processes(common, tmp_path)
    a, b = _record(one), _record(two)
    ra, rb = a["result"], b["result"]
    assert rb["world_size"] == 2 and ra["world_size"] == 1 and rb["effective_batch"] == ra["effective_batch"] == 4
    assert ra["steps"] == rb["steps"] == 6 and a["data"] == b["data"]  # the same 8 images, 3 epochs of 2 steps
    assert ra["num_val"] == rb["num_val"] == 8  # every validation image scored once, by one of the ranks
    assert len(json.loads(Path(b["predictions"]).read_text())) == rb["detections"]
    assert rb["final_loss"] == pytest.approx(ra["final_loss"], rel=0.1)
    for kind in ("box", "mask"):
        assert rb[kind]["AP50"] == pytest.approx(ra[kind]["AP50"], abs=0.1)
