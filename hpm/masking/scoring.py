"""How the EMA teacher scores patches to choose a mask: on the whole image or on partial views.

A score is the teacher's predicted loss (``loss``: HPM) or its last-block [CLS] attention
(``attention``: AttMask). A partial view (``mask.teacher_view: masked``) scores with the loss
predictor the patches it hides, with attention the patches it shows; a patch no view scored is NaN.
"""

from __future__ import annotations

from torch import Tensor

from hpm.config import MaskConfig
from hpm.errors import ConfigError
from hpm.masking.attention import attention_view_scores
from hpm.masking.ids import num_masked
from hpm.masking.schedule import num_hard_patches
from hpm.masking.strategy import ScoreSource
from hpm.masking.teacher_view import score_teacher_views, teacher_views
from hpm.models.mae import MaskedAutoencoder


def score_full_view(
    teacher: MaskedAutoencoder, images: Tensor, source: ScoreSource, keep_tokens: bool = False
) -> tuple[Tensor, Tensor | None]:
    """The teacher on the whole image.

    Args:
        teacher: the EMA teacher (a loss predictor for ``loss`` scores).
        images: [N, C, H, W].
        source: ``loss`` or ``attention``.
        keep_tokens: also return the encoder's patch tokens of ``loss`` scoring (an ``ema``
            target reuses them).

    Returns:
        ``(scores, tokens)``: [N, L] (fp32 for ``loss``), and [N, L, D] or None.
    """
    if source == "attention":
        return teacher.attention_scores(images), None
    if not keep_tokens:
        return teacher.score_patches(images).float(), None
    latent = teacher.forward_encoder(images)  # [N, 1 + L, D]
    scores = teacher.forward_loss_predictor(teacher.forward_decoder_input(latent))  # [N, L]
    return scores.float(), latent[:, 1:]


def score_partial_views(
    teacher: MaskedAutoencoder, images: Tensor, view_noise: Tensor, source: ScoreSource, num_mask: int, num_views: int
) -> Tensor:
    """The teacher on ``num_views`` disjoint partial views drawn from ``view_noise`` [N, L].

    Args:
        teacher: the EMA teacher.
        images: [N, C, H, W].
        view_noise: [N, L] i.i.d. uniform noise (:func:`~hpm.masking.teacher_views`).
        source: ``loss`` or ``attention``.
        num_mask: K_t, patches each view hides.
        num_views: V.

    Returns:
        float32 [N, L]: z-normalised scores averaged over the views that scored the patch; NaN
        for a patch no view scored.
    """
    views = teacher_views(view_noise, num_mask, num_views)
    if source == "attention":
        return attention_view_scores(teacher, images, views)
    return score_teacher_views(teacher, images, views)


def check_teacher_views(cfg: MaskConfig, num_patches: int, source: ScoreSource) -> None:
    """Refuse partial views that do not fit, or that score fewer patches than alpha may choose.

    Raises:
        ConfigError: With the setting to change.
    """
    num_views, view_mask = cfg.teacher_views, num_masked(num_patches, cfg.view_ratio)
    keep = num_patches - view_mask
    if num_views * keep > num_patches:
        raise ConfigError(
            f"mask.teacher_views={num_views} views of {keep} visible patches do not fit in "
            f"{num_patches} patches; lower mask.teacher_views or raise mask.teacher_ratio"
        )
    most_hard = num_hard_patches(num_masked(num_patches, cfg.ratio), cfg.max_alpha)
    if source == "attention":  # the class token attends to the patches a view shows
        scored = num_views * keep
        if most_hard > scored:
            raise ConfigError(
                f"alpha up to {cfg.max_alpha} asks for {most_hard} patches chosen by attention, but "
                f"{num_views} masked teacher view(s) show only {scored} patches; set "
                "mask.teacher_view=full (AttMask's), raise mask.teacher_views or lower mask.teacher_ratio"
            )
    elif num_views == 1 and most_hard > view_mask:
        raise ConfigError(
            f"alpha up to {cfg.max_alpha} asks for {most_hard} hard patches, but one teacher view "
            f"scores only the {view_mask} patches it hides; raise mask.teacher_ratio "
            "or set mask.teacher_views=2 (every patch scored)"
        )
