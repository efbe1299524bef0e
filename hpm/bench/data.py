"""``hpm bench --data DIR|SHARDS``: the pre-training data loader alone, in images per second.

The loader is the one ``hpm pretrain`` builds (folder or shards, the run's augmentation at
``model.img_size``, the seeded global-batch sampler, ``data.draft`` as configured). One worker
is timed in the main process (``num_workers=0``: a worker's own cost, no inter-process
transfer); ``--workers N`` then times a DataLoader with N worker processes. The number of
workers that feeds ``--feed`` images/s is extrapolated linearly from the one-worker figure.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from hpm.bench.device import device_name
from hpm.config import Config
from hpm.data import GlobalBatchSampler, build_pretrain_data, collate_skip_none


@dataclass
class LoaderTiming:
    """One timed loader.

    Attributes:
        workers: Worker processes (0: the main process).
        images: Images timed (after the warm-up batches).
        seconds: Wall time for them.
        img_per_s: ``images / seconds``.
    """

    workers: int
    images: int
    seconds: float
    img_per_s: float


def time_loader(cfg: Config, workers: int, images: int, batch_size: int, warmup: int = 1) -> LoaderTiming:
    """Time ``images`` images (plus ``warmup`` untimed batches) through the pre-training loader."""
    data = build_pretrain_data(cfg.data, cfg.model.img_size, cfg.train.seed, cfg.model.num_frames)
    batch_size = min(batch_size, data.num_images)
    sampler = GlobalBatchSampler(data.num_images, batch_size, seed=cfg.train.seed)
    loader = DataLoader(data.dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skip_none,
                        prefetch_factor=4 if workers else None, persistent_workers=workers > 0)
    batches_needed = warmup + max(1, math.ceil(images / batch_size))
    seen, start, batch_index, epoch = 0, time.perf_counter(), 0, 0
    while batch_index < batches_needed:
        sampler.set_epoch(epoch)
        for batch, _, _ in loader:  # [B, C, img_size, img_size]
            batch_index += 1
            if batch_index == warmup:
                seen, start = 0, time.perf_counter()
            elif batch_index > warmup:
                seen += batch.shape[0]
            if batch_index >= batches_needed:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    return LoaderTiming(workers, seen, seconds, seen / seconds)


def run_data_bench(cfg: Config, workers: int, feed: float | None, images: int, batch_size: int) -> dict[str, Any]:
    """Images/s of one worker and of ``workers`` workers, and the workers that feed ``feed`` img/s.

    Returns:
        A JSON-ready dict: data set, image size, draft, threads, timings, and ``workers_to_feed``.
    """
    one = time_loader(cfg, 0, images, batch_size)
    many = time_loader(cfg, workers, images * workers, batch_size) if workers > 1 else None
    result: dict[str, Any] = {
        "data_dir": cfg.data.data_dir,
        "img_size": cfg.model.img_size,
        "draft": cfg.data.draft,
        "cpu": device_name(torch.device("cpu")),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "per_worker": asdict(one),
        "workers": asdict(many) if many else None,
    }
    if feed:
        result["feed_img_per_s"] = feed
        result["workers_to_feed"] = math.ceil(feed / one.img_per_s)  # linear extrapolation
    return result


def format_data_bench(result: dict[str, Any]) -> str:
    """A few human-readable lines."""
    one = result["per_worker"]
    lines = [
        f"data: {result['data_dir']} at {result['img_size']} px (draft {'on' if result['draft'] else 'off'}), "
        f"{result['cpu']}, OMP_NUM_THREADS={result['omp_num_threads']}",
        f"1 worker (in-process): {one['img_per_s']:.1f} img/s ({one['images']} images in {one['seconds']:.2f} s)",
    ]
    if result["workers"]:
        many = result["workers"]
        lines.append(f"{many['workers']} workers: {many['img_per_s']:.1f} img/s "
                     f"({many['img_per_s'] / many['workers']:.1f} per worker)")
    if "workers_to_feed" in result:
        lines.append(f"to feed {result['feed_img_per_s']:g} img/s: about {result['workers_to_feed']} workers "
                     "(linear extrapolation of the 1-worker figure)")
    return "\n".join(lines)
