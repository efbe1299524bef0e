"""The trained segmenter as ``segmenter.safetensors`` plus ``segmenter.json``, which says how to rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpm.config import ModelConfig
from hpm.eval.model_export import export_model, load_model
from hpm.eval.segment.model import Segmenter, build_segmenter
from hpm.eval.segment.recipes import SegmentConfig
from hpm.models.mae import build_model

FORMAT = "hpm-segment"


def segmenter_spec(encoder_cfg: ModelConfig, cfg: SegmentConfig, mean: tuple[float, ...],
                   std: tuple[float, ...]) -> dict[str, Any]:
    """What :func:`load_segmenter` rebuilds a segmenter from: the encoder's architecture, the recipe
    (head, classes, crop and sliding-window stride) and the normalisation of its inputs."""
    return {"format": FORMAT, "encoder": encoder_cfg.model_dump(mode="json"), "recipe": cfg.model_dump(mode="json"),
            "mean": list(mean), "std": list(std)}


def export_segmenter(model: Segmenter, spec: dict[str, Any], out_dir: Path, source: dict[str, Any]) -> Path:
    """Write ``out_dir/segmenter.safetensors`` and ``out_dir/segmenter.json``; returns the JSON's path."""
    return export_model(model, spec, out_dir, "segmenter", source,
                        "hpm.eval.segment.export.load_segmenter('segmenter.json')")


def build_from_spec(spec: dict[str, Any]) -> Segmenter:
    """A segmenter of ``spec``'s architecture, randomly initialised."""
    encoder = build_model(ModelConfig.model_validate(spec["encoder"]), loss_predictor=False)
    return build_segmenter(encoder, SegmentConfig.model_validate(spec["recipe"]))


def load_segmenter(json_file: str | Path) -> Segmenter:
    """The exported segmenter of ``json_file`` (its weights beside it), in eval mode: it maps a
    normalised ``[N, C, crop, crop]`` batch to class logits ``[N, num_classes, crop, crop]``."""
    return load_model(json_file, build_from_spec)


def evaluate_segmenter_file(json_file: str | Path, data_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of an exported segmenter on the validation split of
    ``data_dir`` (ADE20K's layout), with the recipe's crop, stride and labels (fp32)."""
    import json

    import torch

    from hpm.engine import distributed as D
    from hpm.eval.segment.data import SegmentationDataset, load_segment_data
    from hpm.eval.segment.inference import evaluate_segmenter

    spec = json.loads(Path(json_file).read_text())
    recipe = SegmentConfig.model_validate(spec["recipe"])
    data = load_segment_data(data_dir, recipe, int(spec["encoder"]["in_chans"]), tuple(spec["mean"]), tuple(spec["std"]))
    model = load_segmenter(json_file).to(device)
    val = SegmentationDataset(data.val, recipe, data, train=False)
    return evaluate_segmenter(model, val, recipe.num_classes, recipe.crop_size, recipe.stride(), torch.device(device),
                              "fp32", D.DistInfo())
