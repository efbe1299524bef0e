"""Clip-level evaluation of video encoders: ``hpm eval knn|linear|finetune`` on a video run.

A video run (``model.num_frames`` set) is evaluated on a labelled clip folder (``DIR/train/<class>/``,
``DIR/val/<class>/``, default the run's own ``data.data_dir``) with labels of one kind: the class
folders (the motions of Moving Fashion-MNIST), or ``motion`` / ``class`` read per clip from
``DIR/{train,val}.json`` (:mod:`.data`). Every video is seen through VideoMAE's test views,
``test_clips`` temporal clips times ``test_crops`` spatial crops (:mod:`.views`): the k-NN and the
linear probe (:mod:`hpm.eval.knn`, :mod:`hpm.eval.linear`) run on the frozen encoder's pooled
features averaged over the views (:mod:`.features`); the fine-tune (:mod:`.finetune`,
:mod:`.task`, :mod:`.classifier` on the run engine) averages the softmax scores over them.
Recipes: :mod:`.recipes`; options: :mod:`.options`; the entry point: :mod:`.evaluate`.
"""

from hpm.eval.video.data import VideoEvalData, build_video_eval_data
from hpm.eval.video.evaluate import evaluate_video
from hpm.eval.video.features import clip_features, view_features
from hpm.eval.video.options import LISTED_KINDS, VideoOptions
from hpm.eval.video.recipes import VIDEO_RECIPES, VideoFinetuneConfig, build_video_finetune_config
from hpm.eval.video.source import is_video_source
from hpm.eval.video.views import ClipViews, clip_starts, crop_offsets

__all__ = [
    "LISTED_KINDS", "VIDEO_RECIPES", "ClipViews", "VideoEvalData", "VideoFinetuneConfig", "VideoOptions",
    "build_video_eval_data", "build_video_finetune_config", "clip_features", "clip_starts", "crop_offsets",
    "evaluate_video", "is_video_source", "view_features",
]
