"""What a masking strategy is: a named function from one batch's mask request to its masks.

A strategy reads what it needs from a :class:`MaskRequest` (the noise of this rank's rows of the
global batch, the teacher's scores, ``K``, ``H``, the patch grid) and returns
:class:`~hpm.masking.ids.MaskIds`. The training step, the patch-loss diagnostics and the pictures
all mask through the strategy the registry (:mod:`hpm.masking.registry`) names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from hpm.config import Config, MaskConfig
from hpm.errors import ConfigError
from hpm.masking.ids import MaskIds, num_masked

ScoreSource = Literal["loss", "attention"]  # the teacher's predicted loss, or its [CLS] attention


def global_noise(
    generator: torch.Generator, num_global: int, num_patches: int, rows: tuple[int, int], device: torch.device | str
) -> Tensor:
    """I.i.d. uniform noise drawn for the whole global batch, this rank's ``rows`` kept: [N, L].

    Every rank draws the global batch's noise from the same generator, so any number of ranks
    sees the masks of one process.
    """
    lo, hi = rows
    return torch.rand(num_global, num_patches, generator=generator, device=device)[lo:hi]


@dataclass(frozen=True)
class MaskRequest:
    """What a strategy may read to mask this rank's images of one global batch.

    Attributes:
        cfg: the run's ``mask`` section.
        grid: patch rows, columns.
        num_mask: K, patches (video: tokens) hidden per image.
        generator: the mask generator, seeded alike on every rank.
        num_global: images in the global batch.
        rows: this rank's ``(start, stop)`` rows of the global batch.
        device: where the masks are made.
        num_hard: H, patches per image the teacher's scores may choose.
        scores: [N, L] the teacher's scores of this rank's images (NaN: not scored), or None.
        time_size: token positions in time (video: frames / tubelet; 1 for images); a clip's
            tokens are time-major, ``L = time_size * rows * columns``.
    """

    cfg: MaskConfig
    grid: tuple[int, int]
    num_mask: int
    generator: torch.Generator
    num_global: int
    rows: tuple[int, int]
    device: torch.device | str = "cpu"
    num_hard: int = 0
    scores: Tensor | None = None
    time_size: int = 1

    @property
    def num_patches(self) -> int:
        """L, patches (video: tokens) per image."""
        return self.time_size * self.grid[0] * self.grid[1]

    @property
    def num_cells(self) -> int:
        """Spatial positions per image (rows * columns): L for images, L / time_size for video."""
        return self.grid[0] * self.grid[1]

    def noise(self) -> Tensor:
        """One draw of :func:`global_noise` for this request's rows: [N, L]."""
        return global_noise(self.generator, self.num_global, self.num_patches, self.rows, self.device)

    def cell_noise(self) -> Tensor:
        """One draw of :func:`global_noise` over the spatial positions: [N, rows * columns]."""
        return global_noise(self.generator, self.num_global, self.num_cells, self.rows, self.device)

    def teacher_scores(self) -> Tensor:
        """The teacher's scores [N, L], which a scored strategy needs."""
        if self.scores is None:
            raise ValueError(f"mask.strategy={self.cfg.strategy} chooses patches by the teacher's scores; none given")
        return self.scores


def every_hard(cfg: MaskConfig, num_hard: int) -> int:
    """All ``num_hard`` patches the scores choose stay masked."""
    return num_hard


@dataclass(frozen=True)
class MaskStrategy:
    """A masking strategy as the step, the diagnostics and the pictures use it.

    Attributes:
        name: its ``mask.strategy``.
        mask: request -> masks; the first :attr:`num_chosen` columns of ``ids_mask`` are the
            patches chosen by score.
        scores: what the EMA teacher scores to choose the mask, or None (no teacher scores).
        num_chosen: ``(mask config, H)`` -> masked patches the scores chose.
        check: refuses a run config the strategy cannot work with (None: accepts any).
        tubes: masks whole tubes (a spatial position at every time step, video only): K and
            the chosen count are whole multiples of the time steps.
        takes: the models it masks: ``images``, ``video`` (``model.num_frames`` set) or ``any``.
    """

    name: str
    mask: Callable[[MaskRequest], MaskIds]
    scores: ScoreSource | None = None
    num_chosen: Callable[[MaskConfig, int], int] = every_hard
    check: Callable[[Config], None] | None = None
    tubes: bool = False
    takes: Literal["any", "images", "video"] = "any"

    def check_config(self, cfg: Config) -> None:
        """Refuse a run config the strategy cannot work with: a model of the other kind
        (:attr:`takes`), then the strategy's own :attr:`check`.

        Raises:
            ConfigError: A video strategy on an image model or the reverse.
        """
        video = cfg.model.num_frames is not None
        if self.takes == "video" and not video:
            raise ConfigError(
                f"mask.strategy={self.name} masks tubes over time and needs a video model (model.num_frames "
                "set, e.g. --preset video_small); for images use random, block, hpm or attention"
            )
        if self.takes == "images" and video:
            raise ConfigError(
                f"mask.strategy={self.name} masks an image's patch grid; a video model (model.num_frames "
                "set) takes tube, hpm_tube, random, hpm or attention"
            )
        if self.check is not None:
            self.check(cfg)

    @property
    def uses_teacher(self) -> bool:
        """Whether the EMA teacher's scores choose the mask (the alpha schedule applies)."""
        return self.scores is not None

    def masked_count(self, num_patches: int, ratio: float, time_size: int = 1) -> int:
        """K, tokens hidden per image: :func:`~hpm.masking.ids.num_masked` of the tokens, or of
        the spatial positions times ``time_size`` for a tube strategy."""
        if self.tubes:
            return time_size * num_masked(num_patches // time_size, ratio)
        return num_masked(num_patches, ratio)

    def chosen_count(self, cfg: MaskConfig, num_hard: int, time_size: int = 1) -> int:
        """Masked tokens the scores chose (the first columns of ``ids_mask``): :attr:`num_chosen`,
        whole tubes of ``time_size`` tokens for a tube strategy."""
        chosen = self.num_chosen(cfg, num_hard)
        return chosen // time_size * time_size if self.tubes else chosen
