"""``hpm eval segment``: load the encoder at the crop size, check the data, fine-tune, save JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpm.config import Config, build_config
from hpm.errors import ConfigError
from hpm.data import IMAGENET_MEAN, IMAGENET_STD
from hpm.eval.data import normalisation
from hpm.eval.dense_protocol import DenseTask, run_dense_protocol
from hpm.eval.encoder import LoadedEncoder, Weights, load_encoder
from hpm.eval.results import result_path
from hpm.eval.run import finetune_dir_of
from hpm.eval.segment.data import SegmentationDataset, SegmentData, load_segment_data
from hpm.eval.segment.export import export_segmenter, segmenter_spec
from hpm.eval.segment.model import Segmenter
from hpm.eval.segment.picture import draw_segmentation
from hpm.eval.segment.recipes import SegmentConfig
from hpm.eval.segment.run import run_segment


@dataclass
class SegmentOptions:
    """What ``hpm eval segment`` can be told besides the recipe.

    Attributes:
        data_dir: The data in ADE20K's layout.
        random_init: A randomly initialised encoder of the same architecture (the floor).
        weights: ``"student"`` or ``"teacher"`` (HPM's EMA teacher).
        labels: Only this many training images, drawn by ``seed`` (None: all).
        precision: ``auto`` (the recipe's), ``bf16``, ``fp16`` or ``fp32``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: The labelled images' choice and the random initialisation.
        init_seed: The random initialisation's seed instead of ``seed`` (a floor of several
            initialisations on the same labelled images).
        out: Result file (default ``PATH/eval/segment[_linear][_random_init][_l<N>].json``); the
            run directory is its path without ``.json``.
        cfg: Architecture of a random initialisation without a checkpoint.
        recipe: The segmentation recipe.
    """

    data_dir: str | Path
    random_init: bool = False
    weights: Weights = "student"
    labels: int | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    init_seed: int | None = None
    out: str | Path | None = None
    cfg: Config | None = None
    recipe: SegmentConfig = field(default_factory=SegmentConfig)


def random_init_config(preset: str | None = None) -> Config:
    """The architecture of a random RGB encoder of ``preset`` (default small), ImageNet statistics."""
    model = {"in_chans": 3} | ({"preset": preset} if preset else {})
    return build_config(None, {"model": model, "data": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}})


def _result_file(path: str | Path | None, enc: LoadedEncoder, opts: SegmentOptions) -> Path:
    if opts.out is not None:
        return Path(opts.out)
    protocol = "segment" + ("_linear" if opts.recipe.head == "linear" else "")
    tag = None if opts.labels is None else f"l{opts.labels}"
    return result_path(protocol, path, enc.weights, "cls", enc.cfg.model.preset, tag)


def _source(enc: LoadedEncoder, data: SegmentData) -> dict[str, Any]:
    """What a run is of, compared when it resumes: the encoder (its checkpoint as an absolute path) and the data."""
    encoder = enc.describe()
    if encoder["checkpoint"] is not None:
        encoder["checkpoint"] = str(Path(encoder["checkpoint"]).resolve())
    return {"encoder": encoder, "data": data.describe()}


def _load(path: str | Path | None, opts: SegmentOptions) -> tuple[LoadedEncoder, SegmentData]:
    """The encoder at the crop size and the checked data (its channels and statistics)."""
    if path is None and not opts.random_init:
        raise ConfigError("give a run directory or checkpoint folder to evaluate, or --random-init")
    cfg = opts.cfg if opts.cfg is not None or path is not None else random_init_config()
    init_seed = opts.seed if opts.init_seed is None else opts.init_seed
    enc = load_encoder(path, opts.random_init, opts.weights, cfg, opts.recipe.crop_size, init_seed)
    channels = int(enc.cfg.model.in_chans or 3)
    mean, std = normalisation(enc.cfg.data, channels)
    data = load_segment_data(opts.data_dir, opts.recipe, channels, mean, std, opts.labels, opts.seed)
    return enc, data


def run_segment_eval(path: str | Path | None, opts: SegmentOptions) -> tuple[dict[str, Any], Path | None]:
    """Fine-tune an encoder (or a random one) for segmentation and save the result.

    The run keeps checkpoints in the result file's path without ``.json``
    (:func:`~hpm.eval.run.finetune_dir_of`) and resumes from them when run again (a finished one
    only reports its result). Nothing is written before the data are checked.

    Returns:
        ``(record, file)``: the saved record and the JSON file (None on ranks other than 0).

    Raises:
        CheckpointError, ConfigError, DataError: With a message that says what to fix.
    """
    task = DenseTask(
        "segment", lambda: _load(path, opts), lambda enc: _result_file(path, enc, opts),
        lambda enc, data, device, precision, dist, run_dir: run_segment(
            enc.model, data, opts.recipe, device, precision, dist, run_dir=run_dir, source=_source(enc, data)),
        lambda model, enc, data, target: _write_outputs(model, enc, data, opts.recipe, target),
    )
    return run_dense_protocol(task, opts)


def _write_outputs(model: Segmenter, enc: LoadedEncoder, data: SegmentData, recipe: SegmentConfig,
                   target: Path) -> dict[str, str]:
    """Rank 0, after the run: the segmenter exported to its directory and a picture of its
    predictions beside the result file (``X/segment.json`` -> ``X/segment.png``); their paths."""
    run_dir = finetune_dir_of(target)
    spec = segmenter_spec(enc.model.cfg, recipe, data.mean, data.std)
    export = export_segmenter(model, spec, run_dir, {"run_dir": str(run_dir), "encoder": enc.describe()})
    val = SegmentationDataset(data.val, recipe, data, train=False)
    picture = draw_segmentation(model, val, data.val, recipe, target.with_suffix(".png"))
    return {"export": str(export), "picture": str(picture)}


def summary_line(record: dict[str, Any], file: Path) -> str:
    """One console line: the scores, the data, what was evaluated, the time and the file."""
    res, src, data = record["result"], record["source"], record["data"]
    what = "random init" if src["random_init"] else f"{src['weights']} @ step {src['step']}"
    return (f"segmentation ({res['recipe']['head']}) mIoU {res['miou']:.2f}%, pixel accuracy {res['pixel_acc']:.2f}% "
            f"({res['epochs']} epochs, final loss {res['final_loss']:.4f}) | {data['num_train']} train / "
            f"{data['num_val']} val | {what} | {record['seconds']:.1f} s -> {file}")
