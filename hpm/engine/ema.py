"""EMA teacher: a copy of the student's encoder and loss predictor, updated after each step."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hpm.config import EmaConfig
from hpm.models.mae import MaskedAutoencoder


def build_teacher(student: MaskedAutoencoder) -> MaskedAutoencoder:
    """Frozen copy of the student without the reconstruction decoder (the teacher only scores)."""
    teacher = copy.deepcopy(student)
    teacher.drop_reconstructor()
    teacher.requires_grad_(False)
    return teacher.eval()


class EmaUpdater:
    """Moves the teacher towards the student: t <- decay * t + (1 - decay) * s."""

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        student_params = dict(student.named_parameters())
        names = [name for name, _ in teacher.named_parameters()]
        missing = [n for n in names if n not in student_params]
        if missing:
            raise ValueError(f"teacher parameters absent from the student: {missing[:5]}")
        self.teacher_params = [p for _, p in teacher.named_parameters()]
        self.student_params = [student_params[n] for n in names]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """One EMA step with the given decay."""
        torch._foreach_lerp_(self.teacher_params, self.student_params, 1.0 - decay)


def ema_decay_at(cfg: EmaConfig, epoch: float, epochs: int) -> float:
    """Decay at (fractional) ``epoch``: linear from decay_start to decay_end over the ramp, then flat.

    The ramp lasts ``cfg.ramp_epochs`` epochs, or half the run when that is None.
    """
    ramp = cfg.ramp_epochs if cfg.ramp_epochs is not None else epochs / 2
    frac = 1.0 if ramp <= 0 else min(max(epoch / ramp, 0.0), 1.0)
    return cfg.decay_start + frac * (cfg.decay_end - cfg.decay_start)
