"""The trained detector as ``detector.safetensors`` plus ``detector.json``, which says how to rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.config import ModelConfig
from hpm.eval.detect.model import Detector, build_detector
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.model_export import export_model, load_model
from hpm.models.mae import build_model

FORMAT = "hpm-detect-maskrcnn"


def detector_spec(encoder_cfg: ModelConfig, cfg: DetectConfig, categories: list[dict[str, Any]],
                  mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
    """What :func:`load_detector` rebuilds a detector from: the encoder's architecture, the recipe,
    the COCO categories (label ``i + 1`` is the ``i``-th by id) and the normalisation."""
    return {
        "format": FORMAT, "encoder": encoder_cfg.model_dump(mode="json"), "recipe": cfg.model_dump(mode="json"),
        "categories": sorted(categories, key=lambda c: int(c["id"])), "mean": list(mean), "std": list(std),
    }


def export_detector(model: Detector, spec: dict[str, Any], out_dir: Path, source: dict[str, Any]) -> Path:
    """Write ``out_dir/detector.safetensors`` and ``out_dir/detector.json`` (``spec`` and ``source``);
    returns the JSON's path."""
    return export_model(model, spec, out_dir, "detector", source, "hpm.eval.detect.export.load_detector('detector.json')")


def build_from_spec(spec: dict[str, Any]) -> Detector:
    """A detector of ``spec``'s architecture, randomly initialised."""
    encoder = build_model(ModelConfig.model_validate(spec["encoder"]), loss_predictor=False)
    recipe = DetectConfig.model_validate(spec["recipe"])
    return build_detector(encoder, recipe, len(spec["categories"]), tuple(spec["mean"]), tuple(spec["std"]))


def load_detector(json_file: str | Path) -> Detector:
    """The exported detector of ``json_file`` (its weights beside it), in eval mode."""
    return load_model(json_file, build_from_spec)
