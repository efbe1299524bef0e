"""The run configuration's sections: one pydantic model per section, each validated on its own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Encoder, decoder and loss-predictor shapes (see :data:`~hpm.config.presets.PRESETS`)."""

    preset: Literal["small", "small64", "vit_s16", "vit_b16", "vit_l16", "vit_h14", "video_small", "video_b16"] = "small"
    img_size: int = 32
    patch_size: int = 4
    # video: frames per clip (None: the model takes images) and frames per tubelet, the temporal
    # side of the Conv3d patch embedding (VideoMAE: 16 frames, tubelets of 2)
    num_frames: int | None = None
    tubelet_size: int = 2
    in_chans: int | None = None  # None: follow the data (1 for Fashion-MNIST)
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 128
    decoder_depth: int = 4
    decoder_num_heads: int = 4
    # loss-predictor blocks; None: as deep as the decoder (the paper). Default 1: the efficient
    # mode, as good as the paper's depth on the bundled data at a fraction of the cost (docs/study.md)
    predictor_depth: int | None = 1
    predictor_num_heads: int | None = None  # None: same as decoder_num_heads
    # the old spelling of the pixel targets, kept so that older run configs load: false means
    # loss.target=pix; resolved into loss.target and then cleared (see Config)
    norm_pix_loss: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be divisible by patch_size ({self.patch_size})"
            )
        if self.tubelet_size < 1:
            raise ValueError(f"tubelet_size must be >= 1, got {self.tubelet_size}")
        if self.num_frames is not None and (self.num_frames < 1 or self.num_frames % self.tubelet_size):
            raise ValueError(
                f"num_frames ({self.num_frames}) must be a positive multiple of tubelet_size ({self.tubelet_size})"
            )
        for dim, heads, name in (
            (self.embed_dim, self.num_heads, "embed_dim/num_heads"),
            (self.decoder_embed_dim, self.decoder_num_heads, "decoder_embed_dim/decoder_num_heads"),
        ):
            if dim % heads:
                raise ValueError(f"{name}: {dim} is not divisible by {heads}")
            if dim % 4:
                raise ValueError(f"{name}: width {dim} must be divisible by 4 (2-D sin-cos position embedding)")
        return self


class MaskConfig(_Section):
    """Which patches are hidden: random (MAE), block (BEiT), hpm (the teacher's predicted loss
    chooses the hard patches) or attention (AttMask: the teacher's [CLS] attention chooses them);
    for video models also tube (VideoMAE: one spatial random mask repeated over time) and
    hpm_tube (HPM on tubes: the predicted loss averaged over time chooses the hard tubes)."""

    strategy: Literal["random", "block", "hpm", "attention", "tube", "hpm_tube"] = "hpm"
    ratio: float = 0.75
    # hpm and attention: fraction alpha of the masked patches chosen by the teacher's scores
    schedule: Literal["easy_to_hard", "hard_to_easy", "fixed"] = "easy_to_hard"
    alpha_start: float = 0.0
    alpha_end: float = 0.5
    alpha: float = 0.5  # used by schedule=fixed (alpha=1: always the hardest)
    schedule_unit: Literal["epoch", "iter"] = "epoch"
    select: Literal["hardest", "easiest"] = "hardest"
    # hpm only: what the EMA teacher scores. "full": the whole image (the paper and the authors'
    # release); "masked": random partial views (ratio teacher_ratio, default ratio) scored at their
    # mask-token positions, where the loss predictor is trained. With one view the patches it
    # leaves visible get no score and are never chosen as hard; teacher_views = V > 1 views keep
    # disjoint patch sets, so every patch is scored (z-normalised scores averaged over the views
    # that hid it) at V times the teacher's cost.
    teacher_view: Literal["full", "masked"] = "masked"  # the default: see docs/study.md
    teacher_ratio: float | None = None  # None: the same as ratio
    teacher_views: int = 1
    # attention only (hpm/masking/attention.py): which of the teacher's last-block [CLS]->patch
    # attention (mean over heads) chooses the alpha share: the most-attended patches ("high"), the
    # least-attended ("low"), or the most-attended with the share attention_hints of them shown
    # back ("hints", AttMask's 0.1). Its teacher_view defaults to "full" (AttMask's teacher sees
    # the whole image); a masked-view teacher scores the patches its views *show*.
    attention_mode: Literal["high", "low", "hints"] = "hints"
    attention_hints: float = 0.1
    # block only: smallest block in patches (BEiT: 16), aspect ratio range
    block_min_patches: int = 4
    block_aspect: float = 0.3

    @model_validator(mode="before")
    @classmethod
    def _attention_sees_the_image(cls, data: Any) -> Any:
        """AttMask's teacher attends over the whole image: ``attention`` defaults to ``teacher_view:
        full`` (the default ``masked`` is HPM's); a given ``teacher_view`` is kept."""
        if isinstance(data, dict) and data.get("strategy") == "attention" and "teacher_view" not in data:
            data = {**data, "teacher_view": "full"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "MaskConfig":
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        for name in ("alpha_start", "alpha_end", "alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.teacher_ratio is not None and not 0.0 < self.teacher_ratio < 1.0:
            raise ValueError(f"teacher_ratio must be in (0, 1) or null, got {self.teacher_ratio}")
        if not 0.0 <= self.attention_hints < 1.0:
            raise ValueError(f"attention_hints must be in [0, 1), got {self.attention_hints}")
        if self.teacher_views < 1:
            raise ValueError(f"teacher_views must be >= 1, got {self.teacher_views}")
        return self

    @property
    def view_ratio(self) -> float:
        """Share of the patches each masked teacher view hides (``teacher_ratio``, else ``ratio``)."""
        return self.teacher_ratio if self.teacher_ratio is not None else self.ratio

    @property
    def max_alpha(self) -> float:
        """The largest alpha the schedule reaches."""
        return self.alpha if self.schedule == "fixed" else max(self.alpha_start, self.alpha_end)


TargetName = Literal["norm_pix", "pix", "hog", "ema", "model"]


class LossConfig(_Section):
    """Reconstruction target, loss-prediction objective and its weight lambda."""

    predictor: Literal["relative", "absolute", "none"] = "relative"
    weight: float = 1.0
    # what the reconstructor predicts for a masked patch (hpm/losses/targets.py): pixels
    # normalised per patch (MAE's default) or not, HOG (MaskFeat), features of the EMA teacher's
    # encoder (ema) or of a frozen timm model read from a local file (model)
    target: TargetName = "norm_pix"
    hog_bins: int = 9  # orientation bins over [0, 180) degrees
    hog_cell: int | None = None  # cell side in px; None: half the patch (2 px at patch 4, 8 px at 16)
    target_model: str | None = None  # model: a timm name (None: the one in the weights' hpm export JSON)
    target_weights: str | None = None  # model: a local .safetensors / .pth file (an `hpm export` file works)
    target_dim: int | None = None  # resolved at start: the width of one patch's target (do not set)

    @model_validator(mode="after")
    def _check(self) -> "LossConfig":
        if self.hog_bins < 1:
            raise ValueError(f"hog_bins must be >= 1, got {self.hog_bins}")
        if self.hog_cell is not None and self.hog_cell < 1:
            raise ValueError(f"hog_cell must be >= 1 or null, got {self.hog_cell}")
        if self.target == "model" and not self.target_weights:
            raise ValueError(
                "loss.target=model needs loss.target_weights=FILE (a .safetensors or .pth file on this "
                "machine, e.g. the encoder.safetensors that `hpm export RUN` writes); nothing is downloaded"
            )
        if self.target != "model" and (self.target_model or self.target_weights):
            raise ValueError(
                f"loss.target_model / loss.target_weights are only read with loss.target=model (got target={self.target})"
            )
        return self


class EmaConfig(_Section):
    """EMA teacher: decay ramps linearly from decay_start to decay_end over ramp_epochs."""

    decay_start: float = 0.99
    decay_end: float = 0.999
    ramp_epochs: float | None = None  # None: the first half of the run

    @model_validator(mode="after")
    def _check(self) -> "EmaConfig":
        for name in ("decay_start", "decay_end"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        return self


class DataConfig(_Section):
    """Where images come from and how they are augmented."""

    dataset: Literal["fashion_mnist", "folder"] = "fashion_mnist"
    root: str = FASHION_MNIST_ROOT  # Fashion-MNIST IDX files
    data_dir: str | None = None  # image folder (class folders, ADE20K, flat) or `hpm data pack` shards; sets dataset=folder
    channels: int | None = None  # folder data: 3 (RGB) unless set to 1 (greyscale)
    subset: int | None = None  # seeded, class-balanced subset of the training images
    subset_seed: int | None = None  # chooses the subset; None: train.seed (fix it to compare seeds on one subset)
    num_workers: int = 1
    # how images smaller than model.img_size reach it: "resize" (enlarge, bicubic) or "pad"
    # (zero-pad, centred; the reference runs pad Fashion-MNIST's 28 px to 32)
    fit: Literal["resize", "pad"] = "resize"
    crop_scale: tuple[float, float] = (0.2, 1.0)
    hflip: float = 0.5
    # folder / shard data: decode a JPEG at the smallest scale its random crop needs (PIL draft;
    # see hpm/data/draft.py); false decodes every image at full size
    draft: bool = True
    # video data (a folder of video files): frames between two frames of a clip (VideoMAE: 4 on
    # Kinetics, 2 on Something-Something); the clip's frame count is model.num_frames
    frame_stride: int = 1
    mean: list[float] | None = None  # None: the data set's own statistics
    std: list[float] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.data_dir is not None and self.dataset == "fashion_mnist":
            object.__setattr__(self, "dataset", "folder")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or null, got {self.channels}")
        if self.subset is not None and self.subset <= 0:
            raise ValueError(f"subset must be positive, got {self.subset}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        return self


class TrainConfig(_Section):
    """Optimisation schedule and run bookkeeping."""

    epochs: int = 5
    batch_size: int = 128  # per process, per micro-step
    accum_steps: int = 1
    blr: float = 1.5e-4  # lr = blr * effective_batch / 256
    min_lr: float = 0.0
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float | None = None
    precision: Precision = "auto"
    seed: int = 0
    log_every: int = 10  # optimizer steps
    ckpt_every_epochs: int = 1
    ckpt_every_steps: int | None = None
    keep_ckpts: int = 2
    # the checkpoints at the end of these epochs are written and never pruned (besides the newest
    # keep_ckpts), e.g. to evaluate a run after 1, 2, 5 epochs: a budget curve (hpm study)
    keep_epochs: list[int] = []
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # torch.compile of the student's forward + loss, the teacher's scoring and the target passes
    # (hpm/engine/compile.py). "auto": on for CUDA, off for the CPU, where compiling costs 1-2
    # minutes and gained about 1.05x (0.86-1.24x) on the small preset's step, which a short CPU
    # run does not win back (docs/benchmarks.md)
    compile: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        for name in ("epochs", "batch_size", "accum_steps", "log_every", "keep_ckpts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(not 1 <= e <= self.epochs for e in self.keep_epochs):
            raise ValueError(f"keep_epochs must lie in 1..epochs ({self.epochs}), got {self.keep_epochs}")
        return self


class EvalConfig(_Section):
    """k-NN monitoring during pre-training (train split as memory bank, test split evaluated)
    and the pictures written at the end."""

    knn_at_end: bool = True
    knn_every_epochs: int | None = None  # also every N epochs
    knn_train_subset: int | None = 10000  # class-balanced; null: the whole split
    knn_test_subset: int | None = 2000
    knn_pool: Literal["cls", "avg"] = "cls"
    knn_k: int = 20  # the k reported as knn_top1 (all of 10, 20, 100, 200 are logged)
    figures_at_end: bool = True  # figures/curves.png and figures/patches.png in the run directory


class Config(_Section):
    """A whole run."""

    model: ModelConfig = ModelConfig()
    mask: MaskConfig = MaskConfig()
    loss: LossConfig = LossConfig()
    ema: EmaConfig = EmaConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output_dir: str = "runs/pretrain"

    @model_validator(mode="after")
    def _old_norm_pix_key(self) -> "Config":
        """``model.norm_pix_loss=false`` (older configs) is ``loss.target=pix``; the key is then cleared."""
        if self.model.norm_pix_loss is not None:
            if self.model.norm_pix_loss is False and self.loss.target == "norm_pix":
                self.loss.target = "pix"
            self.model.norm_pix_loss = None
        return self
