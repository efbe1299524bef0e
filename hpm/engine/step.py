"""One pre-training step, shared by the training loop and the benchmark.

Stages in pipeline order: ``generate_mask`` (teacher scores, HPM's predicted loss or AttMask's
[CLS] attention, on the full image or on random partial views, ``mask.teacher_view``, then the
masking strategy; both from :mod:`hpm.masking`), ``forward_backward`` (the reconstruction
targets of ``loss.target``, student forward, losses, backward) and ``optimizer_step`` (clip,
AdamW, EMA update of the teacher, which an ``ema`` target also keeps).

With ``train.compile`` the teacher's scoring, the target and the student's forward + losses
run through ``torch.compile`` (:mod:`hpm.engine.compile`); mask generation, backward, the
optimizer and the EMA update stay eager. Outside log steps (``want_metrics``) a step reads
nothing back to the host: no ``.item()``, no data-dependent shapes (tested).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, NamedTuple

import torch
from torch import Tensor, nn

from hpm.config import Config
from hpm.engine.compile import maybe_compile, resolve_compile
from hpm.engine.ema import EmaUpdater, build_teacher
from hpm.engine.phase_timer import PhaseTimer
from hpm.engine.precision import Resolved, autocast, enable_tf32, prefer_fused_attention
from hpm.engine.ranking import chosen_overlap, masked_spearman, spearman, top_fraction_overlap
from hpm.errors import ConfigError
from hpm.losses import loss_prediction_loss, reconstruction_loss
from hpm.losses.targets import PatchTarget, build_target
from hpm.masking import (
    MaskIds, MaskRequest, check_teacher_views, get_strategy, global_noise, num_masked, score_full_view,
    score_partial_views,
)
from hpm.models.mae import MaskedAutoencoder


class StudentLosses(NamedTuple):
    """What the student's forward + loss pass returns (the compiled part of ``forward_backward``)."""

    loss: Tensor  # [] L_rec + lambda * L_pred
    loss_rec: Tensor  # [] reconstruction MSE over the masked patches
    loss_pred: Tensor  # [] loss-prediction objective (0 without a predictor)
    per_patch: Tensor  # [N, K] fp32 reconstruction loss of each masked patch
    masked_scores: Tensor | None  # [N, K] the student's scores of its masked patches, or None


class PretrainStep:
    """Student, optional EMA teacher, optimizer and the per-step stages of MAE / HPM.

    Args:
        cfg: resolved config (``model.in_chans`` set).
        model: the student; pass the DDP-wrapped module as ``ddp_model`` under torchrun.
        optimizer: optimizer over the student's parameters.
        device: compute device.
        precision: resolved precision.
        rank, world_size, batch_size: this rank's share of each global batch (the mask
            randomness is drawn for the whole global batch so that any number of ranks
            sees the same masks as one process).
        ddp_model: the DDP wrapper, if any.
        target: the reconstruction target (default: built from ``cfg.loss``; pass one already
            built to load a ``model`` target's weights once).

    The passes run through ``torch.compile`` as ``cfg.train.compile`` says for ``device``.
    """

    def __init__(
        self,
        cfg: Config,
        model: MaskedAutoencoder,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        precision: Resolved,
        rank: int = 0,
        world_size: int = 1,
        ddp_model: nn.Module | None = None,
        target: PatchTarget | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.forward_model = ddp_model or model
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.rank = rank
        self.world_size = world_size
        self.batch_size = cfg.train.batch_size
        self.num_patches = model.num_patches
        self.predictor = cfg.loss.predictor
        self.loss_weight = float(cfg.loss.weight)
        if self.predictor != "none" and not model.has_predictor:
            raise ValueError("loss.predictor is set but the model has no loss-predictor branch")
        self.masking = get_strategy(cfg.mask.strategy)
        self.num_mask = self.masking.masked_count(self.num_patches, cfg.mask.ratio, model.time_size)
        self.uses_teacher = self.masking.uses_teacher
        self.masking.check_config(cfg)
        self.teacher_view = cfg.mask.teacher_view
        self.teacher_views = cfg.mask.teacher_views
        self.teacher_num_mask = num_masked(self.num_patches, cfg.mask.view_ratio)
        if self.uses_teacher and self.teacher_view == "masked":
            check_teacher_views(cfg.mask, self.num_patches, self.masking.scores)
        self.target = (target or build_target(cfg, device)).to(device)
        if self.target.dim != model.target_dim:
            raise ConfigError(
                f"the {self.target.name} target is {self.target.dim} wide but the model reconstructs "
                f"{model.target_dim} values per patch; build the model with target_dim={self.target.dim}"
            )
        self._teacher_tokens: Tensor | None = None  # full-image teacher tokens shared with an ema target
        model.set_fused_attention(prefer_fused_attention(device, precision))
        enable_tf32(device, precision)
        self.teacher: MaskedAutoencoder | None = None
        self.ema: EmaUpdater | None = None
        if self.uses_teacher or self.target.needs_teacher:
            self.teacher = build_teacher(model)
            self.ema = EmaUpdater(self.teacher, model)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.train.seed)  # same on every rank: global-batch masks
        self.timer = PhaseTimer(device)
        self.compiled = resolve_compile(cfg.train.compile, device)
        self._build_passes()

    def release_ddp(self) -> None:
        """Drop the DDP wrapper (its reducer holds the process group); the bare model runs from now on.

        The step refers to itself through its passes (bound methods), so only the cyclic garbage
        collector frees it. Without this, the wrapper, the process group and gloo's threads would
        live on past ``destroy_process_group`` until a collection, often the interpreter's
        finalization, where a gloo thread that needs the GIL aborts the process (SIGABRT,
        "terminate called without an active exception").
        """
        self.forward_model = self.model

    # ----------------------------------------------------------------- helpers
    def _build_passes(self) -> None:
        """The passes ``torch.compile`` may take (:mod:`hpm.engine.compile`), compiled if ``self.compiled``."""
        on = self.compiled
        self._student_pass = maybe_compile(self._student_losses, on)
        self._full_view_pass = maybe_compile(self._full_view_scores, on)
        self._masked_view_pass = maybe_compile(self._masked_view_scores, on)
        self._target_pass = maybe_compile(self._target_values, on)

    def num_chosen(self, num_hard: int) -> int:
        """Masked patches the teacher's score chose, the first columns of ``ids_mask``: ``num_hard``,
        less the shown-back hints of attention masking's ``hints`` mode."""
        return self.masking.chosen_count(self.cfg.mask, num_hard, self.model.time_size)

    def autocast(self) -> ContextManager[object]:
        return autocast(self.device, self.precision)

    def _global_rows(self, n_local: int) -> tuple[int, int, int]:
        start = self.rank * self.batch_size
        return self.batch_size * self.world_size, start, start + n_local

    # ----------------------------------------------------------------- stages
    @torch.no_grad()
    def teacher_scores(self, images: Tensor, view_noise: Tensor | None = None) -> Tensor:
        """Teacher's score per patch: predicted loss (``hpm``) or [CLS] attention (``attention``).
        [N, C, H, W] -> [N, L].

        Full view (``view_noise`` None): every patch of the whole image. Masked view: the
        partial views of :func:`~hpm.masking.teacher_views` drawn from ``view_noise`` [N, L],
        z-normalised scores of the hidden patches (``hpm``) or of the shown ones
        (``attention``); NaN for a patch no view scored.
        """
        assert self.teacher is not None
        with self.timer("teacher"):
            if view_noise is None:
                scores, tokens = self._full_view_pass(images)
                self._teacher_tokens = tokens  # [N, L, D] for an ema target, else None
                return scores
            return self._masked_view_pass(images, view_noise)

    def _full_view_scores(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """The teacher on the whole image: scores [N, L] fp32, and its patch tokens [N, L, D]
        when an ``ema`` target shares them (else None)."""
        assert self.teacher is not None and self.masking.scores is not None
        with self.autocast():
            return score_full_view(self.teacher, images, self.masking.scores, keep_tokens=self.target.needs_teacher)

    def _masked_view_scores(self, images: Tensor, view_noise: Tensor) -> Tensor:
        """The teacher on its partial views drawn from ``view_noise`` [N, L]: scores [N, L] fp32."""
        assert self.teacher is not None and self.masking.scores is not None
        with self.autocast():
            return score_partial_views(
                self.teacher, images, view_noise, self.masking.scores, self.teacher_num_mask, self.teacher_views
            )

    @torch.no_grad()
    def targets(self, images: Tensor, ids_mask: Tensor) -> Tensor:
        """Reconstruction targets of the masked patches. [N, C, H, W], [N, K] -> [N, K, D] fp32.

        Feature targets run their encoder once, without gradients, in the step's precision; an
        ``ema`` target reuses the teacher's full-image tokens of this step's scoring pass if the
        teacher saw the full image, else runs the teacher's encoder on the full image.
        """
        with self.timer("target"):
            tokens = None
            if self.target.needs_teacher:
                tokens, self._teacher_tokens = self._teacher_tokens, None
                if tokens is not None and tokens.shape[0] != images.shape[0]:
                    tokens = None
            return self._target_pass(images, ids_mask, tokens)

    def _target_values(self, images: Tensor, ids_mask: Tensor, tokens: Tensor | None) -> Tensor:
        """:meth:`targets` given the teacher's full-image tokens [N, L, D] (None: compute them
        if the target needs them)."""
        with self.autocast():
            if self.target.needs_teacher and tokens is None:
                assert self.teacher is not None
                tokens = self.teacher.forward_encoder(images)[:, 1:]  # [N, L, D]
            return self.target(images, ids_mask, tokens)

    @torch.no_grad()
    def generate_mask(self, images: Tensor, num_hard: int = 0) -> tuple[MaskIds, Tensor | None]:
        """Masks for this rank's images, plus the teacher scores that chose them (HPM).

        Args:
            images: [N, C, H, W] on the device.
            num_hard: H, patches per image chosen by the teacher (``hpm`` and ``attention``).

        Returns:
            (MaskIds with [N, L-K] / [N, K] indices, teacher scores [N, L] or None; NaN marks
            a patch the teacher did not score). The first :meth:`num_chosen` columns of
            ``ids_mask`` are the patches chosen by score.
        """
        n_global, lo, hi = self._global_rows(images.shape[0])
        scores = None
        if self.uses_teacher:
            view_noise = None
            if self.teacher_view == "masked":  # drawn for the global batch, before the student's noise
                with self.timer("masks"):
                    view_noise = global_noise(self.generator, n_global, self.num_patches, (lo, hi), self.device)
            scores = self.teacher_scores(images, view_noise)  # [N, L]
        request = MaskRequest(
            self.cfg.mask, self.model.grid_size, self.num_mask, self.generator, n_global, (lo, hi), self.device,
            num_hard, scores, self.model.time_size,
        )
        with self.timer("masks"):
            masks = self.masking.mask(request)
        return masks, scores

    def forward_backward(
        self,
        images: Tensor,
        masks: MaskIds,
        teacher_scores: Tensor | None = None,
        num_hard: int = 0,
        loss_scale: float = 1.0,
        want_metrics: bool = False,
        sync_grads: bool = True,
    ) -> dict[str, Tensor]:
        """Student forward, losses and backward for one micro-batch.

        Returns detached device tensors: ``loss``, ``loss_rec``, ``loss_pred`` and, when
        ``want_metrics``, ``pred_spearman`` and ``pred_top25`` (the student's scores of its masked
        patches vs their loss), ``teacher_spearman`` (the teacher scores that chose the mask vs the
        step's real loss, over the masked patches the teacher scored) and, when ``num_hard`` > 0,
        ``teacher_top25`` (share of the ``num_hard`` score-chosen patches, the first columns of
        ``masks.ids_mask``, that lie in the truly hardest quarter of the step's masked patches;
        chance 0.25; with attention ``hints``, the :meth:`num_chosen` patches left masked).
        """
        no_sync = (
            self.forward_model.no_sync
            if not sync_grads and hasattr(self.forward_model, "no_sync")
            else contextlib.nullcontext
        )
        target = self.targets(images, masks.ids_mask)  # [N, K, D]
        with no_sync():
            with self.timer("forward"):
                out = self._student_pass(images, masks.ids_keep, masks.ids_mask, target)
            with self.timer("backward"):
                self.scaler.scale(out.loss * loss_scale).backward()
        result = {"loss": out.loss.detach(), "loss_rec": out.loss_rec.detach(), "loss_pred": out.loss_pred.detach()}
        if want_metrics:
            with torch.no_grad():
                real = out.per_patch.detach()
                masked_scores = out.masked_scores
                if masked_scores is not None:
                    pred = masked_scores.detach().float()
                    result["pred_spearman"] = spearman(pred, real).mean()
                    result["pred_top25"] = top_fraction_overlap(pred, real, 0.25).mean()
                if teacher_scores is not None:
                    t = torch.gather(teacher_scores, 1, masks.ids_mask)  # [N, K], NaN: not scored
                    if self.teacher_view == "full":
                        result["teacher_spearman"] = spearman(t, real).mean()
                    else:
                        result["teacher_spearman"] = masked_spearman(t, real, torch.isfinite(t)).nanmean()
                    chosen = self.num_chosen(num_hard)
                    if chosen > 0:
                        result["teacher_top25"] = chosen_overlap(real, chosen).mean()
        return result

    def _student_losses(self, images: Tensor, ids_keep: Tensor, ids_mask: Tensor, target: Tensor) -> StudentLosses:
        """Student forward (in the step's precision) and its losses (fp32).

        Args:
            images: [N, C, H, W].
            ids_keep, ids_mask: [N, L - K] / [N, K] patch indices of the student's mask.
            target: [N, K, D] reconstruction targets of the masked patches.
        """
        with self.autocast():
            out = self.forward_model(images, ids_keep, ids_mask)
        loss_rec, per_patch = reconstruction_loss(out.pred, target)  # [], [N, K]
        loss = loss_rec
        loss_pred = torch.zeros((), device=images.device)
        masked_scores = None
        if self.predictor != "none":
            assert out.scores is not None
            masked_scores = torch.gather(out.scores, 1, ids_mask)  # [N, K]
            loss_pred = loss_prediction_loss(self.predictor, masked_scores, per_patch)
            loss = loss_rec + self.loss_weight * loss_pred
        return StudentLosses(loss, loss_rec, loss_pred, per_patch, masked_scores)

    def optimizer_step(self, ema_decay: float | None = None) -> None:
        """Clip (if configured), step the optimizer, clear gradients, update the EMA teacher."""
        with self.timer("optimizer"):
            if self.cfg.train.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and ema_decay is not None:
            with self.timer("ema"):
                self.ema.update(ema_decay)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, object]:
        """Optimizer, scaler and mask-generator state (weights are saved separately)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "mask_generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.scaler.load_state_dict(state["scaler"])  # type: ignore[arg-type]
        self.generator.set_state(state["mask_generator"])  # type: ignore[arg-type]
