"""Clips/s of the video pre-training loader per worker, beside the clips/s a training step consumes.

    OMP_NUM_THREADS=1 python benchmarks/video_loader.py [--data-dir DIR] [--clips 512] \
        [--workers 0,1,2] [--batch-size 32] [--batches 8] [--large-videos 64] [--codecs ffv1,h264] \
        [--step-variants videomae,hpm_efficient] [--json FILE]

Each case builds the pre-training clip data set as ``hpm pretrain`` does
(:func:`hpm.data.build_pretrain_data` with the preset's ``num_frames`` and ``img_size``) and
times it through :func:`hpm.bench.data.time_loader` (the loader of ``hpm bench --data``: the
seeded global-batch sampler, ``collate_skip_none``, one untimed warm-up batch, then a fixed
number of batches) with 0 (the main process: one worker's own cost), 1 and 2 worker processes.

- ``moving``: Moving Fashion-MNIST at ``video_small`` (16 frames of 32 px, greyscale, stride 1,
  FFV1 ``.mkv``): ``--data-dir``, or ``--clips`` clips written by
  :func:`hpm.data.video.write_moving` into a temporary folder.
- ``large-<codec>``: ``--large-videos`` synthetic videos (moving discs over a colour gradient,
  light noise) of ``--large-frames`` frames at ``--large-size`` px, read as ``video_b16`` reads
  Kinetics (16 frames of 224 px, RGB, ``data.frame_stride=4``). ``ffv1``: lossless FFV1 in
  Matroska, written by :func:`hpm.data.video.write_video` (FFmpeg's default GOP of 12: a frame
  decodes only after the frames since its key frame); ``ffv1-g1``: the same with every frame a
  key frame (``-g 1``), so a clip seeks to each of its frames; ``h264``: H.264 (libx264, yuv420p,
  crf 23, x264's default GOP, so one key frame per video) in MP4, as Kinetics is distributed.

Per case, ``parts`` splits one clip's time in the main process into decoding
(:func:`hpm.data.video.read_clip`) and the clip transform (crop, resize, flip, normalise).
``step`` times ``hpm bench --preset video_small`` (fp32, eager, mask ratio 0.9, 1 channel) at the
same batch size; ``ratios`` divides the clips/s of one worker by the clips/s a step consumes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpm.bench import run_bench
from hpm.bench.data import time_loader
from hpm.bench.device import device_name
from hpm.config import Config, build_config
from hpm.data import build_pretrain_data
from hpm.data.video import MovingOptions, read_clip, write_moving, write_video

GPU_CLIPS_PER_S = 32.0
"""Assumed, not measured: one H200 step of ViT-B video (``video_b16``) takes about 1 s for 32 clips."""
CODECS = ("ffv1", "ffv1-g1", "h264")


def _csv(text: str) -> list[str]:
    """The non-empty items of a comma-separated list."""
    return [part for part in text.split(",") if part]


def clip_config(data_dir: Path, preset: str, channels: int, stride: int, batch_size: int) -> Config:
    """The run config ``hpm pretrain --data-dir DIR --preset PRESET`` builds for these clips."""
    return build_config(overrides={
        "model": {"preset": preset},
        "data": {"data_dir": str(data_dir), "channels": channels, "frame_stride": stride, "num_workers": 0},
        "train": {"batch_size": batch_size, "device": "cpu"},
    })


def shapes_video(rng: np.random.Generator, frames: int, size: int) -> torch.Tensor:
    """Synthetic RGB frames uint8 ``[T, 3, size, size]``: four discs moving at constant speed
    (wrapping at the edges) over a diagonal colour gradient, plus uniform noise of +-3 levels."""
    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1)  # [T, 1, 1]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")  # [H, W] each
    corners = torch.from_numpy(rng.uniform(0, 255, size=(2, 3))).float()  # [2, 3]
    weight = ((yy + xx) / (2 * size - 2)).unsqueeze(-1)  # [H, W, 1]
    canvas = (corners[0] * (1 - weight) + corners[1] * weight).expand(frames, size, size, 3).clone()  # [T, H, W, 3]
    for _ in range(4):
        centre = rng.uniform(0, size, size=2)
        speed = rng.uniform(-4, 4, size=2)
        radius = rng.uniform(size / 16, size / 6)
        cy = (centre[0] + speed[0] * t) % size  # [T, 1, 1]
        cx = (centre[1] + speed[1] * t) % size
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2  # [T, H, W]
        canvas[inside] = torch.from_numpy(rng.uniform(0, 255, size=3)).float()
    noise = torch.from_numpy(rng.integers(-3, 4, size=canvas.shape)).float()
    return (canvas + noise).clamp(0, 255).to(torch.uint8).permute(0, 3, 1, 2).contiguous()  # [T, 3, H, W]


def write_shapes(out: Path, videos: int, frames: int, size: int, codec: str, seed: int = 0) -> Path:
    """Write ``videos`` synthetic videos (:func:`shapes_video`) into the flat folder ``out``."""
    from torchcodec.encoders import VideoEncoder

    out.mkdir(parents=True, exist_ok=True)
    for index in range(videos):
        clip = shapes_video(np.random.default_rng([seed, index]), frames, size)  # [T, 3, S, S]
        if codec == "ffv1":
            write_video(out / f"video_{index:05d}.mkv", clip, fps=25)
        elif codec == "ffv1-g1":  # write_video's settings, every frame a key frame
            options = {"g": 1, "fflags": "+bitexact"}
            VideoEncoder(clip, frame_rate=25).to_file(str(out / f"video_{index:05d}.mkv"), codec="ffv1",
                                                      pixel_format="bgr0", extra_options=options)
        elif codec == "h264":
            VideoEncoder(clip, frame_rate=25).to_file(str(out / f"video_{index:05d}.mp4"), codec="libx264",
                                                      pixel_format="yuv420p", crf=23)
        else:
            raise ValueError(f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    return out


def clip_parts(cfg: Config, clips: int) -> dict[str, float]:
    """Median milliseconds per clip of decoding and of the transform, in the main process."""
    data = build_pretrain_data(cfg.data, cfg.model.img_size, cfg.train.seed, cfg.model.num_frames)
    dataset = data.base  # the VideoClipDataset (no subset taken)
    decode, transform = [], []
    for index in range(min(clips, len(dataset.samples)) + 1):  # the first clip warms up
        rng = np.random.default_rng(index)
        start = time.perf_counter()
        frames = read_clip(dataset.samples[index % len(dataset.samples)][0], dataset.num_frames, dataset.stride,
                           rng, dataset.channels)  # [T, C, H, W] uint8
        middle = time.perf_counter()
        dataset.transform(frames)  # [C, T, size, size] float32
        if index:
            decode.append(middle - start)
            transform.append(time.perf_counter() - middle)
    return {"decode_ms": 1e3 * statistics.median(decode), "transform_ms": 1e3 * statistics.median(transform)}


def time_case(name: str, cfg: Config, codec: str, workers: list[int], batches: int, parts: int) -> dict[str, Any]:
    """Clips/s of the pre-training loader of ``cfg`` with each worker count, and the clip parts."""
    batch_size = cfg.train.batch_size  # time_loader lowers it to the number of clips when fewer
    loader: dict[str, dict[str, float]] = {}
    for count in workers:
        timing = time_loader(cfg, count, batches * batch_size, batch_size)
        loader[str(count)] = {"clips": timing.images, "seconds": timing.seconds, "clips_per_s": timing.img_per_s}
    return {
        "name": name, "data_dir": cfg.data.data_dir, "codec": codec, "preset": cfg.model.preset,
        "num_frames": cfg.model.num_frames, "img_size": cfg.model.img_size, "frame_stride": cfg.data.frame_stride,
        "channels": cfg.data.channels, "batch_size": batch_size, "loader": loader,
        "parts": clip_parts(cfg, parts) if parts else None,
    }


def step_time(variants: list[str], batch_size: int, steps: int) -> dict[str, float]:
    """Seconds per training step of each ``video_small`` variant (``hpm bench``: fp32, eager, CPU)."""
    cfg = build_config(overrides={
        "model": {"preset": "video_small", "in_chans": 1}, "mask": {"ratio": 0.9},
        "train": {"batch_size": batch_size, "precision": "fp32", "device": "cpu", "compile": False},
    })
    result = run_bench(cfg, ["fp32"], variants, steps=steps, warmup=1, compile="off")
    return {name: result[name]["fp32"]["step_s"] for name in variants}


def add_ratios(result: dict[str, Any]) -> None:
    """Per case: one worker's clips/s over the clips/s each timed step consumes (CPU), and the
    workers an assumed ``GPU_CLIPS_PER_S`` would need at 224 px (linear in the one-worker figure)."""
    step = result.get("step") or {}
    for case in result["cases"]:
        one = case["loader"].get("0") or next(iter(case["loader"].values()))
        per_worker = one["clips_per_s"]
        case["worker_over_step"] = {name: per_worker / (result["step_batch_size"] / s) for name, s in step.items()}
        big = case["preset"] == "video_b16"  # the assumed GPU rate is ViT-B's
        case["workers_for_gpu"] = math.ceil(GPU_CLIPS_PER_S / per_worker) if big else None


def format_table(result: dict[str, Any]) -> str:
    """The loader table, the clip parts, the step times and the ratios as text."""
    workers = list(result["cases"][0]["loader"]) if result["cases"] else []
    lines = [f"{result['cpu']}, OMP_NUM_THREADS={result['omp_num_threads']}, torch threads {result['torch_threads']}",
             "case | codec | clip | " + " | ".join(f"clips/s, {w} workers" for w in workers)
             + " | decode ms/clip | transform ms/clip | workers for 32 clips/s"]
    for case in result["cases"]:
        clip = f"{case['num_frames']}x{case['img_size']}px s{case['frame_stride']} c{case['channels']}"
        rates = " | ".join(f"{case['loader'][w]['clips_per_s']:.1f}" for w in workers)
        parts = case["parts"] or {"decode_ms": math.nan, "transform_ms": math.nan}
        lines.append(f"{case['name']} | {case['codec']} | {clip} | {rates} | {parts['decode_ms']:.1f} | "
                     f"{parts['transform_ms']:.1f} | {case.get('workers_for_gpu') or '-'}")
    for name, seconds in (result.get("step") or {}).items():
        consumed = result["step_batch_size"] / seconds
        lines.append(f"step {name} (video_small, batch {result['step_batch_size']}): {seconds:.3f} s = "
                     f"{consumed:.1f} clips/s consumed; one worker / step: " + ", ".join(
                         f"{c['name']} {c['worker_over_step'][name]:.1f}x" for c in result["cases"]))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``argv``; None reads ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="Moving Fashion-MNIST folder (default: write --clips clips)")
    parser.add_argument("--clips", type=int, default=512, help="Moving clips to write without --data-dir")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated loader worker counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per worker count (moving)")
    parser.add_argument("--large-videos", type=int, default=64, help="synthetic 224-px case videos (0: skip)")
    parser.add_argument("--large-frames", type=int, default=64)
    parser.add_argument("--large-size", type=int, default=256)
    parser.add_argument("--large-batches", type=int, default=3, help="timed batches per worker count (large)")
    parser.add_argument("--codecs", default="ffv1,ffv1-g1,h264", help=f"large case codecs: {', '.join(CODECS)}")
    parser.add_argument("--parts", type=int, default=32, help="clips timed for the decode / transform split")
    parser.add_argument("--step-variants", default="videomae,hpm_efficient", help="'' skips the step timing")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the result here")
    return parser.parse_args(argv)


def run_cases(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Write the missing data into ``tmp`` and time every case."""
    workers = [int(w) for w in _csv(args.workers)]
    moving = args.data_dir
    if moving is None:
        moving = tmp / "moving"
        write_moving(moving, MovingOptions(num_train=args.clips, num_val=0), progress=False)
    cfg = clip_config(moving, "video_small", 1, 1, args.batch_size)
    cases = [time_case("moving", cfg, "ffv1", workers, args.batches, args.parts)]
    for codec in _csv(args.codecs) if args.large_videos else []:
        folder = write_shapes(tmp / f"large_{codec}", args.large_videos, args.large_frames, args.large_size, codec)
        cfg = clip_config(folder, "video_b16", 3, 4, args.batch_size)
        cases.append(time_case(f"large-{codec}", cfg, codec, workers, args.large_batches, args.parts))
    return cases


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and return (and with ``--json``, write) the result."""
    args = parse_args(argv)
    result: dict[str, Any] = {
        "cpu": device_name(torch.device("cpu")), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(), "gpu_clips_per_s_assumed": GPU_CLIPS_PER_S,
        "step_batch_size": args.batch_size,
    }
    with tempfile.TemporaryDirectory(prefix="hpm_video_loader_") as tmp:
        result["cases"] = run_cases(args, Path(tmp))
    variants = _csv(args.step_variants)
    result["step"] = step_time(variants, args.batch_size, args.steps) if variants else {}
    add_ratios(result)
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
