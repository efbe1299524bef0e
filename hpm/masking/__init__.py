"""Masking strategies: pure functions that return which patches are kept and which are masked."""

from hpm.masking.attention import AttentionMode, attention_mask, attention_view_scores, num_chosen, num_hints, shown_hints
from hpm.masking.block import block_mask
from hpm.masking.hard import hard_patch_mask
from hpm.masking.ids import MaskIds, num_masked, split_by_order
from hpm.masking.random import random_mask
from hpm.masking.registry import STRATEGIES, get_strategy, score_source
from hpm.masking.schedule import alpha_at, num_hard_patches
from hpm.masking.scoring import check_teacher_views, score_full_view, score_partial_views
from hpm.masking.strategy import MaskRequest, MaskStrategy, ScoreSource, global_noise
from hpm.masking.tube import cell_scores, hard_tube_mask, tube_mask
from hpm.masking.teacher_view import average_at_masked, score_teacher_views, teacher_views, znorm

__all__ = [
    "MaskIds", "alpha_at", "block_mask", "hard_patch_mask", "num_hard_patches", "num_masked",
    "random_mask", "split_by_order", "average_at_masked", "score_teacher_views", "teacher_views", "znorm",
    "AttentionMode", "attention_mask", "attention_view_scores", "num_chosen", "num_hints", "shown_hints",
    "MaskRequest", "MaskStrategy", "ScoreSource", "global_noise", "STRATEGIES", "get_strategy", "score_source",
    "check_teacher_views", "score_full_view", "score_partial_views", "cell_scores", "hard_tube_mask", "tube_mask",
]
