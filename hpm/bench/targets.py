"""Reconstruction targets timed beside a variant's norm-pix step (``hpm bench --target``).

A ``model`` target without weights is a randomly initialised copy of the student's encoder,
exported to a temporary file: the cost of a feature target depends on its architecture, not
on its weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hpm.config import Config, config_from_dict
from hpm.models import build_model


def with_target(cfg: Config, target: str, weights: str | None, tmp: Path) -> Config:
    """``cfg`` with ``loss.target=target``; a ``model`` target without weights gets a randomly
    initialised copy of the student's encoder, exported into ``tmp``."""
    raw = cfg.model_dump(mode="json")
    raw["loss"].update(target=target, target_dim=None)
    if target == "model":
        if weights is None:
            from hpm.export import export_encoder

            file = tmp / "random_encoder.safetensors"
            if not file.is_file():
                torch.manual_seed(0)
                chans = int(cfg.model.in_chans or 3)
                base = cfg.model_dump(mode="json")
                meta_cfg = config_from_dict({**base, "data": {**base["data"], "mean": [0.5] * chans, "std": [0.5] * chans}})
                export_encoder(build_model(cfg.model, loss_predictor=False), meta_cfg, file)
            weights = str(file)
        raw["loss"]["target_weights"] = weights
    return config_from_dict(raw)


def describe_target(cfg: Config, weights: str | None) -> str:
    """One line on the reconstruction target of ``cfg`` for the report."""
    lc = cfg.loss
    if lc.target == "hog":
        return f"HOG, {lc.hog_bins} bins, {lc.hog_cell or 'half-patch'} px cells"
    if lc.target == "ema":
        return "EMA teacher encoder features (full image)"
    if lc.target == "model":
        return f"frozen model {weights}" if weights else "frozen model: a random copy of the student's encoder (timing only)"
    return lc.target
