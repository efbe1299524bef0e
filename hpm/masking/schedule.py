"""The fraction alpha of masked patches chosen by the teacher, over training."""

from __future__ import annotations

from hpm.config import MaskConfig


def alpha_at(cfg: MaskConfig, epoch: int, step: int, epochs: int, total_steps: int) -> float:
    """alpha_t for the optimizer step ``step`` (0-based) of epoch ``epoch`` (0-based).

    ``easy_to_hard``: alpha_start + (t/T)(alpha_end - alpha_start) with t/T = (epoch+1)/epochs
    (per epoch, as the authors' release) or (step+1)/total_steps (per iteration);
    ``hard_to_easy``: the same ramp reversed (alpha_end -> alpha_start); ``fixed``: ``cfg.alpha``.
    """
    if cfg.schedule == "fixed":
        return cfg.alpha
    if cfg.schedule_unit == "epoch":
        frac = (epoch + 1) / epochs
    else:
        frac = (step + 1) / total_steps
    frac = min(max(frac, 0.0), 1.0)
    start, end = cfg.alpha_start, cfg.alpha_end
    if cfg.schedule == "hard_to_easy":
        start, end = end, start
    return start + frac * (end - start)


def num_hard_patches(num_mask: int, alpha: float) -> int:
    """H = int(K * alpha)."""
    return int(num_mask * alpha)
