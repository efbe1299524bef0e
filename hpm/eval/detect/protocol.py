"""``hpm eval detect``: load the encoder at the image size, check the COCO data, fine-tune, save
the result JSON, the COCO predictions beside it and the detector in its directory."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpm.config import Config
from hpm.errors import ConfigError
from hpm.eval.data import normalisation
from hpm.eval.detect.data import DetectData, coco_paths, load_detect_data
from hpm.eval.detect.export import detector_spec, export_detector
from hpm.eval.detect.model import Detector
from hpm.eval.detect.picture import draw_predictions
from hpm.eval.detect.recipes import DetectConfig
from hpm.eval.detect.run import run_detect
from hpm.eval.detect.task import PREDICTIONS
from hpm.eval.dense_protocol import DenseTask, run_dense_protocol
from hpm.eval.encoder import LoadedEncoder, Weights, load_encoder
from hpm.eval.results import result_path
from hpm.eval.run import finetune_dir_of
from hpm.eval.segment.protocol import random_init_config


@dataclass
class DetectOptions:
    """What ``hpm eval detect`` can be told besides the recipe.

    Attributes:
        data_dir: The data in COCO's layout (``images/<split>/``, ``annotations/instances_<split>.json``).
        train_json: The training split's COCO file instead (with ``train_images``).
        val_json: The validation split's COCO file instead (with ``val_images``).
        train_images: The training images' folder.
        val_images: The validation images' folder.
        random_init: A randomly initialised encoder of the same architecture (the floor).
        weights: ``"student"`` or ``"teacher"`` (HPM's EMA teacher).
        labels: Only this many training images, drawn by ``seed`` (None: all).
        precision: ``auto`` (the recipe's), ``bf16``, ``fp16`` or ``fp32``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: The labelled images' choice and the random initialisation.
        init_seed: The random initialisation's seed instead of ``seed`` (a floor of several
            initialisations on the same labelled images).
        out: Result file (default ``PATH/eval/detect[_random_init][_l<N>].json``); the detection
            directory is its path without ``.json``.
        cfg: Architecture of a random initialisation without a checkpoint.
        recipe: The detection recipe.
    """

    data_dir: str | Path | None = None
    train_json: str | Path | None = None
    val_json: str | Path | None = None
    train_images: str | Path | None = None
    val_images: str | Path | None = None
    random_init: bool = False
    weights: Weights = "student"
    labels: int | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    init_seed: int | None = None
    out: str | Path | None = None
    cfg: Config | None = None
    recipe: DetectConfig = field(default_factory=DetectConfig)


def predictions_file(result_file: Path) -> Path:
    """Where the COCO results go: beside the result file (``X/detect.json`` -> ``X/detect.predictions.json``;
    their picture: ``X/detect.predictions.png``)."""
    return result_file.with_name(result_file.stem + ".predictions.json")


def _result_file(path: str | Path | None, enc: LoadedEncoder, opts: DetectOptions) -> Path:
    if opts.out is not None:
        return Path(opts.out)
    tag = None if opts.labels is None else f"l{opts.labels}"
    return result_path("detect", path, enc.weights, "cls", enc.cfg.model.preset, tag)


def _source(enc: LoadedEncoder, data: DetectData) -> dict[str, Any]:
    """What a run is of, compared when it resumes: the encoder (its checkpoint as an absolute path) and the data."""
    encoder = enc.describe()
    if encoder["checkpoint"] is not None:
        encoder["checkpoint"] = str(Path(encoder["checkpoint"]).resolve())
    return {"encoder": encoder, "data": data.describe()}


def _load(path: str | Path | None, opts: DetectOptions) -> tuple[LoadedEncoder, DetectData]:
    """The encoder at the image size and the checked data (its channels and statistics)."""
    if path is None and not opts.random_init:
        raise ConfigError("give a run directory or checkpoint folder to evaluate, or --random-init")
    paths = coco_paths(opts.data_dir, (opts.train_json, opts.val_json), (opts.train_images, opts.val_images))
    cfg = opts.cfg if opts.cfg is not None or path is not None else random_init_config()
    init_seed = opts.seed if opts.init_seed is None else opts.init_seed
    enc = load_encoder(path, opts.random_init, opts.weights, cfg, opts.recipe.image_size, init_seed)
    channels = int(enc.cfg.model.in_chans or 3)
    mean, std = normalisation(enc.cfg.data, channels)
    return enc, load_detect_data(paths, channels, mean, std, opts.labels, opts.seed)


def run_detect_eval(path: str | Path | None, opts: DetectOptions) -> tuple[dict[str, Any], Path | None]:
    """Fine-tune an encoder (or a random one) as a Mask R-CNN detector and save the result.

    The run keeps checkpoints in the result file's path without ``.json``
    (:func:`~hpm.eval.run.finetune_dir_of`), resumes from them when run again (a finished one only
    reports its result) and exports the detector there. Nothing is written before the data are checked.

    Returns:
        ``(record, file)``: the saved record and the JSON file (None on ranks other than 0).

    Raises:
        CheckpointError, ConfigError, DataError: With a message that says what to fix.
    """
    task = DenseTask(
        "detect", lambda: _load(path, opts), lambda enc: _result_file(path, enc, opts),
        lambda enc, data, device, precision, dist, run_dir: run_detect(
            enc.model, data, opts.recipe, device, precision, dist, run_dir=run_dir, source=_source(enc, data)),
        lambda model, enc, data, target: _write_outputs(model, enc, data, opts.recipe, target),
    )
    return run_dense_protocol(task, opts)


def _write_outputs(model: Detector, enc: LoadedEncoder, data: DetectData, recipe: DetectConfig,
                   target: Path) -> dict[str, str]:
    """Rank 0, after the run: the detector exported to its directory, the COCO predictions copied
    beside the result file and a picture of a few of them; their paths for the record."""
    run_dir = finetune_dir_of(target)
    spec = detector_spec(enc.model.cfg, recipe, data.val.categories, data.mean, data.std)
    export = export_detector(model, spec, run_dir, {"run_dir": str(run_dir), "encoder": enc.describe()})
    predictions = predictions_file(target)
    predictions.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / PREDICTIONS, predictions)
    picture = draw_predictions(data.val, json.loads(predictions.read_text()), predictions.with_suffix(".png"))
    return {"export": str(export), "predictions": str(predictions), "picture": str(picture)}


def summary_line(record: dict[str, Any], file: Path) -> str:
    """One console line: the scores, the data, what was evaluated, the time and the file."""
    res, src, data = record["result"], record["source"], record["data"]
    what = "random init" if src["random_init"] else f"{src['weights']} @ step {src['step']}"
    return (f"detection box AP {100 * res['box']['AP']:.1f}, mask AP {100 * res['mask']['AP']:.1f} "
            f"({res['epochs']} epochs, final loss {res['final_loss']:.4f}) | {data['num_train']} train / "
            f"{data['num_val']} val | {what} | {record['seconds']:.1f} s -> {file}")
