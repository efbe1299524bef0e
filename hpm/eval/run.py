"""``hpm eval knn|linear|finetune``: load the encoder and the data, run a protocol, save JSON."""

from __future__ import annotations

import time
from contextlib import nullcontext
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from hpm.config import Config, DataConfig
from hpm.data.labels import LabelCount, parse_labels
from hpm.engine import distributed as D
from hpm.engine.logger import setup_logging
from hpm.engine.lock import RunDirLock
from hpm.engine.outdir import check_output_dir
from hpm.engine.precision import Resolved, resolve_device, resolve_precision
from hpm.errors import ConfigError
from hpm.eval.data import EvalData, build_eval_data
from hpm.eval.encoder import LoadedEncoder, Pool, Weights, load_encoder
from hpm.eval.finetune import FinetuneConfig, classifier_spec, run_finetune
from hpm.eval.knn import DEFAULT_KS, TEMPERATURE, run_knn
from hpm.eval.linear import LinearProbeConfig, run_linear
from hpm.eval.results import result_path, write_result
from hpm.eval.video import VideoOptions, evaluate_video

Protocol = Literal["knn", "linear", "finetune"]
# Writes a fine-tuned classifier: (classifier, classifier_spec, .safetensors file, source) -> anything
ClassifierExport = Callable[[torch.nn.Module, dict[str, Any], Path, dict[str, Any]], Any]


@dataclass
class EvalOptions:
    """Everything ``hpm eval`` can be told; the defaults are the CLI's.

    Attributes:
        random_init: Evaluate a randomly initialised encoder of the same architecture.
        raw_pixels: k-NN or linear probe on the normalised pixels instead of features (the
            floor; the encoder's architecture only sets the image size and channels).
        weights: ``"student"`` or ``"teacher"`` (HPM's EMA teacher).
        pool: Frozen features: ``"cls"`` (class token) or ``"avg"`` (mean patch token).
        train_subset: Class-balanced subset of the train split (None: all); k-NN and probe.
            Not used with ``labels``.
        test_subset: Same for the test split.
        labels: The few-label protocol (every protocol): only this many train images (``600``,
            or ``"1%"`` of the whole train split) keep their label, class-balanced, nested and
            chosen by ``seed`` (:mod:`hpm.data.labels`); they replace the train subset (and the
            fine-tune recipe's ``train_subset``; its ``val_holdout`` is then held out of the
            rest of the train split).
        batch_size: Images per forward pass when extracting features.
        precision: ``auto``, ``bf16``, ``fp16`` or ``fp32``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        data_dir: Evaluate on an ImageFolder (``train/`` and ``val/``) instead.
        data_root: Another Fashion-MNIST folder.
        img_size: Evaluate at another resolution (multiple of the patch size).
        seed: Subsets and random initialisation.
        init_seed: The random initialisation's own seed (None: ``seed``), so that several random
            encoders can be evaluated on the same subsets.
        num_workers: DataLoader workers for feature extraction.
        out: Result file (default: see :func:`~hpm.eval.results.result_path`).
        cfg: Architecture and data for a random initialisation without a checkpoint.
        ks: k-NN neighbourhood sizes.
        temperature: k-NN vote temperature.
        probe: Linear-probe recipe.
        finetune: Fine-tuning recipe (its own subsets and precision apply).
        video: A video run's label kind, test views and fine-tune recipe (None: their defaults);
            refused for an image run. A video run is evaluated by :mod:`hpm.eval.video`.
    """

    random_init: bool = False
    raw_pixels: bool = False
    weights: Weights = "student"
    pool: Pool = "cls"
    train_subset: int | None = 10000
    test_subset: int | None = 2000
    labels: LabelCount | int | str | None = None
    batch_size: int = 256
    precision: str = "auto"
    device: str = "auto"
    data_dir: str | None = None
    data_root: str | None = None
    img_size: int | None = None
    seed: int = 0
    init_seed: int | None = None
    num_workers: int = 0
    out: str | Path | None = None
    cfg: Config | None = None
    ks: tuple[int, ...] = DEFAULT_KS
    temperature: float = TEMPERATURE
    probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    video: VideoOptions | None = None


def eval_data_config(base: DataConfig, data_dir: str | None = None, data_root: str | None = None) -> DataConfig:
    """The checkpoint's data section, switched to another ImageFolder or Fashion-MNIST folder."""
    raw = base.model_dump()
    if data_dir is not None:
        raw.update(dataset="folder", data_dir=data_dir)
    elif data_root is not None:
        raw.update(dataset="fashion_mnist", root=data_root, data_dir=None)
    if data_dir is not None or data_root is not None:
        raw.update(subset=None)
    return DataConfig.model_validate(raw)


def _build_data(
    enc: LoadedEncoder,
    opts: EvalOptions,
    train_subset: int | None,
    test_subset: int | None,
    val_holdout: int = 0,
    labels: LabelCount | None = None,
) -> EvalData:
    """The evaluation data; with ``labels`` the labelled images replace the train subset."""
    data_cfg = eval_data_config(enc.cfg.data, opts.data_dir, opts.data_root)
    return build_eval_data(
        data_cfg, enc.cfg.model.img_size, int(enc.cfg.model.in_chans or 1),
        None if labels is not None else train_subset, test_subset, opts.seed, val_holdout, labels,
    )


def _source(enc: LoadedEncoder, opts: EvalOptions) -> dict[str, Any]:
    """What was evaluated, for the result file (raw pixels: no encoder, only its input shape)."""
    if not opts.raw_pixels:
        return enc.describe()
    return {"kind": "raw_pixels", "checkpoint": None, "step": None, "weights": "raw_pixels", "random_init": False,
            "model": {"img_size": enc.cfg.model.img_size, "in_chans": enc.cfg.model.in_chans}}


def _check_options(protocol: str, path: str | Path | None, opts: EvalOptions) -> None:
    """Refuse an unknown protocol, a fine-tune of pixels, two floors at once, or nothing to evaluate."""
    if protocol not in ("knn", "linear", "finetune"):
        raise ConfigError(f"unknown protocol {protocol!r}; use knn, linear or finetune")
    if opts.raw_pixels and protocol == "finetune":
        raise ConfigError("raw pixels have nothing to fine-tune; use --raw-pixels with knn or linear "
                          "(--random-init is the fine-tune's floor)")
    if opts.raw_pixels and opts.random_init:
        raise ConfigError("choose one floor: --raw-pixels or --random-init")
    if path is None and not (opts.random_init or opts.raw_pixels):
        raise ConfigError("give a run directory or checkpoint folder to evaluate, or --random-init")


def finetune_dir_of(result_file: str | Path) -> Path:
    """The fine-tune directory of a result file: its path without the suffix
    (``X/eval/finetune.json`` -> ``X/eval/finetune/``; a name without suffix gets ``.d``); it
    holds ``checkpoints/`` and the exported ``classifier.safetensors`` + ``classifier.json``."""
    path = Path(result_file)
    return path.with_suffix("") if path.suffix else path.with_name(path.name + ".d")


def _finetune_source(enc: LoadedEncoder, data: EvalData, opts: EvalOptions) -> dict[str, Any]:
    """What a fine-tune is of, compared when it resumes: the encoder (its checkpoint as an
    absolute path), the data (with the folder it came from) and the subset seed."""
    encoder = enc.describe()
    if encoder["checkpoint"] is not None:
        encoder["checkpoint"] = str(Path(encoder["checkpoint"]).resolve())
    folder = opts.data_dir or opts.data_root
    return {
        "encoder": encoder,
        "data": {**data.describe(), "folder": str(Path(folder).resolve()) if folder else None},
        "subset_seed": opts.seed,
    }


def _encoder_and_result_file(
    protocol: Protocol, path: str | Path | None, opts: EvalOptions, labels: LabelCount | None
) -> tuple[LoadedEncoder, Path]:
    """The encoder to evaluate (a random one with its own init seed) and the result file."""
    init_seed = opts.seed if opts.init_seed is None else opts.init_seed
    enc = load_encoder(path, opts.random_init or opts.raw_pixels, opts.weights, opts.cfg, opts.img_size, init_seed)
    weights = "raw_pixels" if opts.raw_pixels else enc.weights
    label_kind = opts.video.label if opts.video is not None else None  # a video run's listed labels: their own file
    tag = "_".join(t for t in (label_kind, None if labels is None else labels.tag) if t) or None
    return enc, Path(opts.out or result_path(protocol, path, weights, opts.pool, enc.cfg.model.preset, tag))


def _check_writable(protocol: Protocol, result_file: Path) -> None:
    """Refuse a result file (and a fine-tune directory) that cannot be written."""
    check_output_dir(finetune_dir_of(result_file) if protocol == "finetune" else result_file.parent, "--out")


def _write_classifier(
    export: ClassifierExport, classifier: torch.nn.Module, enc: LoadedEncoder, data: EvalData, run_dir: Path,
    result: dict[str, Any], global_pool: Literal["avg", "token"],
) -> None:
    """Write the fine-tuned classifier as ``run_dir/classifier.safetensors`` + ``.json`` (for timm) with ``export``."""
    source = {"finetune_dir": str(run_dir), "step": result["steps"], "top1": result["top1"], "encoder": enc.describe()}
    export(classifier, classifier_spec(enc.model, data, global_pool), run_dir / "classifier.safetensors", source)


def _finetune(
    enc: LoadedEncoder, opts: EvalOptions, labels: LabelCount | None, device: torch.device, dist: D.DistInfo,
    target: Path, export: ClassifierExport | None,
) -> tuple[dict[str, Any], EvalData, Resolved]:
    """Fine-tune into :func:`finetune_dir_of` ``target``; returns (result, data, precision)."""
    ft = opts.finetune
    precision = resolve_precision(ft.precision if opts.precision == "auto" else opts.precision, device)
    data = _build_data(enc, opts, ft.train_subset, ft.test_subset, ft.val_holdout, labels)
    run_dir = finetune_dir_of(target)
    result, classifier = run_finetune(
        enc.model, data, ft, device, precision, dist, run_dir=run_dir, source=_finetune_source(enc, data, opts)
    )
    if dist.is_main and export is not None:
        _write_classifier(export, classifier, enc, data, run_dir, result, ft.global_pool)
    return result, data, precision


def _frozen(
    protocol: Protocol, enc: LoadedEncoder, opts: EvalOptions, labels: LabelCount | None, device: torch.device
) -> tuple[dict[str, Any], EvalData, Resolved]:
    """k-NN or linear probe on frozen features (or raw pixels); returns (result, data, precision)."""
    precision = resolve_precision(opts.precision, device)
    data = _build_data(enc, opts, opts.train_subset, opts.test_subset, labels=labels)
    model = None if opts.raw_pixels else enc.model.to(device)
    if protocol == "knn":
        result = run_knn(model, data, opts.ks, opts.pool, opts.temperature, opts.batch_size, device, precision, opts.num_workers)
    else:
        result = run_linear(model, data, opts.pool, opts.probe, opts.batch_size, device, precision, opts.num_workers)
    return result, data, precision


def _evaluate(
    protocol: Protocol, path: str | Path | None, opts: EvalOptions, labels: LabelCount | None, dist: D.DistInfo,
    export_classifier: ClassifierExport | None, start: float,
) -> tuple[dict[str, Any], Path | None]:
    """Check the output can be written, load the encoder, evaluate (a fine-tune holding its
    directory's lock from before its data is loaded) and save the record."""
    device = resolve_device(opts.device, dist.local_rank)
    if opts.out is not None:
        _check_writable(protocol, Path(opts.out))  # before anything is loaded
    enc, target = _encoder_and_result_file(protocol, path, opts, labels)
    _check_writable(protocol, target)  # the default result file lies in the run: before the data
    if opts.video is not None and not enc.model.is_video:
        raise ConfigError("--label, --test-clips, --test-crops and the video recipes apply to video runs; "
                          f"{path or 'this encoder'} takes images")
    locked = RunDirLock(finetune_dir_of(target), dist.is_main) if protocol == "finetune" else nullcontext()
    with locked:
        if enc.model.is_video:
            result, data, precision = evaluate_video(protocol, enc, opts, labels, device, dist, finetune_dir_of(target))
        elif protocol == "finetune":
            result, data, precision = _finetune(enc, opts, labels, device, dist, target, export_classifier)
        else:
            result, data, precision = _frozen(protocol, enc, opts, labels, device)
        record = {
            "protocol": protocol,
            "source": _source(enc, opts),
            "data": data.describe(),
            "result": result,
            "device": str(device),
            "precision": precision,
            "seconds": round(time.perf_counter() - start, 3),
        }
        if not dist.is_main:
            return record, None
        return record, write_result(target, record)


def run_eval(
    protocol: Protocol,
    path: str | Path | None,
    opts: EvalOptions | None = None,
    export_classifier: ClassifierExport | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """Evaluate a checkpoint (or a random initialisation) with one protocol and save the result.

    A fine-tune keeps checkpoints in :func:`finetune_dir_of` the result file and resumes from
    them when run again (a finished one only reports its result).

    Args:
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        path: Run directory or checkpoint folder (None only with ``random_init`` or ``raw_pixels``,
            and ``cfg``).
        opts: The options.
        export_classifier: Writes a finished fine-tune's classifier into its directory, called
            on rank 0 as ``export_classifier(classifier, spec, file, source)`` with ``file``
            ``classifier.safetensors`` (:func:`hpm.export.export_classifier`); None: not written.

    Returns:
        ``(record, file)``: the saved record and the JSON file (None on ranks other than 0).

    Raises:
        CheckpointError, ConfigError, DataError: With a message that says what to fix.
    """
    opts = opts or EvalOptions()
    _check_options(protocol, path, opts)
    labels = None if opts.labels is None else parse_labels(opts.labels)
    start = time.perf_counter()
    dist = D.init_distributed("cuda" if torch.cuda.is_available() and opts.device != "cpu" else "cpu") if protocol == "finetune" else D.DistInfo()
    setup_logging(dist.is_main)
    try:
        return _evaluate(protocol, path, opts, labels, dist, export_classifier, start)
    finally:
        if protocol == "finetune":
            D.shutdown_distributed()
