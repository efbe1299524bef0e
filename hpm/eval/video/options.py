"""What a clip-level evaluation is told besides the image protocols' options: the label kind and
the test views (VideoMAE's multi-view testing), and the video fine-tune recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpm.errors import ConfigError
from hpm.eval.video.recipes import VideoFinetuneConfig

LabelKind = Literal["folder", "motion", "class"]
# --label values: the per-clip labels of DIR/{train,val}.json ("folder" is the default, the class folders)
LISTED_KINDS: tuple[str, ...] = ("motion", "class")


@dataclass
class VideoOptions:
    """Options of ``hpm eval knn|linear|finetune`` that only a video run takes.

    Attributes:
        label: ``None`` (the class folders: the motions of Moving Fashion-MNIST), ``"motion"`` or
            ``"class"`` (read per clip from ``DIR/{train,val}.json``).
        test_clips: Temporal clips per video, evenly spread from its first to its last start.
        test_crops: Spatial crops per clip, left / centre / right along the long side (1: the
            centre). Square videos give the same crop whatever the number.
        finetune: The fine-tune recipe (None: ``video_small``).
    """

    label: str | None = None
    test_clips: int = 2
    test_crops: int = 1
    finetune: VideoFinetuneConfig | None = None

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in LISTED_KINDS:
            raise ConfigError(f"unknown --label {self.label!r}; use motion or class (leave it out for the "
                              "class folders)")
        if self.test_clips < 1 or self.test_crops < 1:
            raise ConfigError(f"--test-clips and --test-crops must be >= 1, got {self.test_clips} and {self.test_crops}")

    @property
    def kind(self) -> LabelKind:
        """The label kind: ``folder`` unless ``label`` names one."""
        return "folder" if self.label is None else self.label  # type: ignore[return-value]
