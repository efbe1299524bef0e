"""Semantic segmentation of a pre-trained encoder (BEiT / MAE protocol) on the run engine.

The encoder becomes a timm ``VisionTransformer`` at the crop size. ``upernet`` (default): the
outputs of four evenly spaced blocks become a four-level pyramid (:mod:`.pyramid`) read by a
UperNet head (segmentation_models_pytorch's decoder); the whole model trains with AdamW,
layer-wise lr decay (``timm.optim.create_optimizer_v2``), drop path and a poly schedule with a
linear warm-up. ``linear``: the encoder is frozen and a 1x1 convolution classifies the last
block's patch tokens. Both upsample the logits bilinearly to the image size. Data come in
ADE20K's layout and are checked before anything is written (:mod:`.data`); mIoU, pixel accuracy
and per-class IoU come from one confusion matrix (:mod:`.metrics`) over sliding-window
predictions (:mod:`.inference`). Recipes: ``small`` (the scenes of ``hpm data scenes`` at 64 px)
and ``ade20k`` (512 crop, 160k iterations of 16 images, lr 1e-4, layer decay 0.65, warm-up 1500).

The loop, checkpoints, resumption, the directory's lock, the stop signals and the non-finite-loss
error are the run engine's (:mod:`hpm.engine.loop`); :mod:`.task` is the task it runs, :mod:`.resume`
its resumption and :mod:`.run` its set-up; :mod:`.protocol` is ``hpm eval segment``.
"""

from hpm.eval.segment.data import SegmentData, load_segment_data
from hpm.eval.segment.export import evaluate_segmenter_file, export_segmenter, load_segmenter
from hpm.eval.segment.metrics import confusion_matrix, segmentation_scores
from hpm.eval.segment.model import Segmenter, block_indices, build_segmenter
from hpm.eval.segment.protocol import SegmentOptions, random_init_config, run_segment_eval
from hpm.eval.segment.pyramid import FeaturePyramid
from hpm.eval.segment.recipes import IGNORE_INDEX, RECIPES, SegmentConfig, build_segment_config
from hpm.eval.segment.run import run_segment

__all__ = [
    "IGNORE_INDEX", "RECIPES", "FeaturePyramid", "SegmentConfig", "SegmentData", "SegmentOptions", "Segmenter",
    "block_indices", "build_segment_config", "build_segmenter", "confusion_matrix", "evaluate_segmenter_file", "export_segmenter",
    "load_segment_data", "load_segmenter", "random_init_config", "run_segment", "run_segment_eval",
    "segmentation_scores",
]
