"""Step time and evaluation speed of the dense fine-tunes beside the classification fine-tune.

Each task is built by its own ``setup`` at its ``small`` recipe (no run directory) from a random
encoder of the ``small`` preset: classification on Fashion-MNIST as ``hpm eval finetune
--random-init`` builds it (32 px, 1 channel), segmentation and detection on scenes written by
``hpm.data.scenes`` into a temporary folder, with the RGB encoder at 64 px that ``hpm eval segment``
and ``hpm eval detect`` build for ``--random-init``. After a warm-up, N optimizer steps are timed
one by one, as the engine calls them (the data loading of each step included); then the task's
own evaluation runs once over its test or validation split::

    python benchmarks/dense_step.py                      # 10 timed steps per task, torch's threads
    python benchmarks/dense_step.py --steps 20 --threads 1 --json dense.json

Printed: a Markdown table with, per task, the image side, the batch, the median seconds per
optimizer step, training images/s (batch / median step), evaluation images/s (split size /
evaluation seconds; detection includes pycocotools' scoring), and the step time and the time per
training image as multiples of the classification fine-tune's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from hpm.config import build_config
from hpm.data.scenes import SceneOptions, write_scenes
from hpm.engine import distributed as D
from hpm.engine.precision import Resolved, resolve_device, resolve_precision
from hpm.eval.data import build_eval_data, normalisation
from hpm.eval.detect import build_detect_config, coco_paths, coco_scores, load_detect_data
from hpm.eval.detect.coco_eval import predict
from hpm.eval.detect.run import setup as setup_detect
from hpm.eval.encoder import load_encoder
from hpm.eval.finetune import build_finetune_config, evaluate_classifier
from hpm.eval.finetune.run import setup as setup_finetune
from hpm.eval.recipes import fit_schedule
from hpm.eval.segment import build_segment_config, load_segment_data, random_init_config
from hpm.eval.segment.inference import evaluate_segmenter
from hpm.eval.segment.run import setup as setup_segment

PRESET = "small"
RECIPE = "small"


@dataclass
class Built:
    """A task ready to train, and how to time its evaluation.

    Attributes:
        task: The engine task (``start_epoch``, ``train_step``, ``steps_per_epoch``).
        image_size: Side of the images the encoder takes.
        batch: Images per optimizer step.
        precision: Autocast precision of training and evaluation.
        evaluate: Runs the task's evaluation once; returns the number of images it scored.
    """

    task: Any
    image_size: int
    batch: int
    precision: Resolved
    evaluate: Callable[[], int]


@dataclass
class Measured:
    """One task's figures (seconds; images per second)."""

    task: str
    image_size: int
    batch: int
    precision: str
    step_s: float  # median of the timed steps
    steps_s: list[float]
    train_img_s: float
    eval_images: int
    eval_s: float
    eval_img_s: float


def build_classification(device: torch.device) -> Built:
    """The classification fine-tune of ``hpm eval finetune --random-init`` at the ``small`` recipe."""
    enc = load_encoder(None, True, "student", build_config(None, {"model": {"preset": PRESET}}))
    ft = build_finetune_config(RECIPE)
    data = build_eval_data(enc.cfg.data, enc.cfg.model.img_size, int(enc.cfg.model.in_chans or 1),
                           ft.train_subset, ft.test_subset, 0, ft.val_holdout)
    ft = fit_schedule(ft, len(data.train))
    precision = resolve_precision(ft.precision, device)
    task = setup_finetune(enc.model, data, ft, device, precision, D.DistInfo(), None, {})

    def evaluate() -> int:
        return evaluate_classifier(task.model, task.test_set, ft.eval_batch_size, device, precision)[1]

    return Built(task, data.img_size, ft.batch_size * ft.accum_steps, precision, evaluate)


def build_segmentation(scenes: Path, device: torch.device, preset: str = PRESET) -> Built:
    """The segmentation fine-tune of ``hpm eval segment --random-init --preset preset`` at the ``small`` recipe."""
    cfg = build_segment_config(RECIPE)
    enc = load_encoder(None, True, "student", random_init_config(preset), cfg.crop_size)
    channels = int(enc.cfg.model.in_chans or 3)
    data = load_segment_data(scenes, cfg, channels, *normalisation(enc.cfg.data, channels))
    precision = resolve_precision(cfg.precision, device)
    dist = D.DistInfo()
    task = setup_segment(enc.model, data, cfg, device, precision, dist, None, {})

    def evaluate() -> int:
        evaluate_segmenter(task.model, task.val_set, cfg.num_classes, cfg.crop_size, cfg.stride(), device,
                           precision, dist)
        return len(task.val_set)

    return Built(task, cfg.crop_size, cfg.batch_size, precision, evaluate)


def build_detection(scenes: Path, device: torch.device, preset: str = PRESET) -> Built:
    """The detection fine-tune of ``hpm eval detect --random-init --preset preset`` at the ``small`` recipe."""
    cfg = build_detect_config(RECIPE)
    enc = load_encoder(None, True, "student", random_init_config(preset), cfg.image_size)
    channels = int(enc.cfg.model.in_chans or 3)
    paths = coco_paths(scenes, (None, None), (None, None))
    data = load_detect_data(paths, channels, *normalisation(enc.cfg.data, channels))
    precision = resolve_precision(cfg.precision, device)
    dist = D.DistInfo()
    task = setup_detect(enc.model, data, cfg, device, precision, dist, None, {})

    def evaluate() -> int:
        results = predict(task.model, task.val_set, data.cat_ids, device, precision, dist)
        coco_scores(task.ground_truth, results)
        return len(task.val_set)

    return Built(task, cfg.image_size, cfg.batch_size, precision, evaluate)


def time_steps(task: Any, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` optimizer steps after ``warmup`` untimed ones; a new epoch's
    batches start when one runs out, as in the engine."""
    bar = tqdm(disable=True)
    epoch, done, batches = 0, 0, task.start_epoch(0, 0)
    seconds = []
    for n in range(warmup + steps):
        if done == task.steps_per_epoch:
            epoch, done = epoch + 1, 0
            batches = task.start_epoch(epoch, 0)
        start = time.perf_counter()
        task.train_step(batches, epoch, bar)
        elapsed = time.perf_counter() - start
        done += 1
        if n >= warmup:
            seconds.append(elapsed)
    return seconds


def measure(name: str, built: Built, warmup: int, steps: int) -> Measured:
    """Time ``built``'s steps, then its evaluation."""
    seconds = time_steps(built.task, warmup, steps)
    median = statistics.median(seconds)
    start = time.perf_counter()
    images = built.evaluate()
    eval_s = time.perf_counter() - start
    print(f"{name}: step {median:.3f} s (median of {steps}), evaluation {images} images in {eval_s:.1f} s", flush=True)
    return Measured(name, built.image_size, built.batch, built.precision, median, [round(s, 4) for s in seconds],
                    built.batch / median, images, eval_s, images / eval_s)


def format_table(rows: list[Measured]) -> str:
    """The Markdown table, ratios against the first row (the classification fine-tune)."""
    ref = rows[0]
    lines = [
        "| task | image | batch | precision | s / step (median) | train img/s | eval img/s | step x cls | per image x cls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_image = (r.step_s / r.batch) / (ref.step_s / ref.batch)
        lines.append(
            f"| {r.task} | {r.image_size} px | {r.batch} | {r.precision} | {r.step_s:.3f} | {r.train_img_s:.1f} | "
            f"{r.eval_img_s:.1f} | {r.step_s / ref.step_s:.2f}x | {per_image:.2f}x |"
        )
    return "\n".join(lines)


def run(steps: int, warmup: int, num_train: int, num_val: int, preset: str = PRESET) -> list[Measured]:
    """Write the scenes, then build and measure the three tasks one after the other."""
    device = resolve_device("cpu")
    rows = [measure("classification", build_classification(device), warmup, steps)]
    with tempfile.TemporaryDirectory(prefix="dense_step_") as tmp:
        scenes = Path(tmp) / "scenes"
        write_scenes(scenes, SceneOptions(num_train=num_train, num_val=num_val, size=64, seed=0), progress=False)
        rows.append(measure("segmentation", build_segmentation(scenes, device, preset), warmup, steps))
        rows.append(measure("detection", build_detection(scenes, device, preset), warmup, steps))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per task")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--num-train", type=int, default=64, help="training scenes")
    p.add_argument("--num-val", type=int, default=32, help="validation scenes")
    p.add_argument("--preset", default=PRESET, help="the dense tasks' encoder: small (64 px at patch 4: 256 tokens, "
                                                   "default) or small64 (patch 8: 64 tokens, the scenes study's)")
    p.add_argument("--json", type=Path, help="also write the raw result here")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | {platform.processor() or platform.machine()} | "
          f"{torch.get_num_threads()} threads | load {os.getloadavg()[0]:.1f}", flush=True)
    start = time.perf_counter()
    rows = run(args.steps, args.warmup, args.num_train, args.num_val, args.preset)
    print(f"\n{format_table(rows)}\n\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps, "preset": args.preset,
                "warmup": args.warmup, "num_train": args.num_train, "num_val": args.num_val}
        args.json.write_text(json.dumps({"meta": meta, "tasks": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
