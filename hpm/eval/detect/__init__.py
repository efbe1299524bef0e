"""Object detection and instance segmentation of a pre-trained encoder (ViTDet) on the run engine.

The encoder becomes a timm ``VisionTransformer`` (global attention in every block, any input a
multiple of its patch); its last block's tokens, as a map, feed ViTDet's simple feature pyramid
(:mod:`.backbone`: strides p/4, p/2, p, 2p) under torchvision's Mask R-CNN (:mod:`.model`: RPN,
RoIAlign box and mask heads, one anchor size per level). The whole model trains with AdamW,
layer-wise lr decay (``timm.optim.create_optimizer_v2``), drop path and a step schedule with a
linear warm-up. Data come as COCO instance JSON and are checked before anything is written
(:mod:`.data`); box and mask AP come from pycocotools (:mod:`.coco_eval`). Recipes: ``small``
(the scenes of ``hpm data scenes`` at 64 px) and ``coco`` (ViTDet-B: 1024 px, large-scale jitter,
100 epochs of 64 images, lr 1e-4, layer decay 0.7, drop path 0.1).

The loop, checkpoints, resumption, the directory's lock, the stop signals and the non-finite-loss
error are the run engine's (:mod:`hpm.engine.loop`); :mod:`.task` is the task it runs, :mod:`.resume`
its resumption, :mod:`.run` its set-up, :mod:`.export` the trained detector, :mod:`.picture` a
picture of its predictions; :mod:`.protocol` is ``hpm eval detect``.
"""

from hpm.eval.detect.backbone import SimplePyramid, ViTDetBackbone
from hpm.eval.detect.coco_eval import coco_scores, ground_truth, to_coco_results
from hpm.eval.detect.data import CocoSplit, DetectData, coco_paths, load_detect_data, read_coco
from hpm.eval.detect.export import export_detector, load_detector
from hpm.eval.detect.model import Detector, build_detector
from hpm.eval.detect.protocol import DetectOptions, run_detect_eval
from hpm.eval.detect.recipes import RECIPES, DetectConfig, build_detect_config
from hpm.eval.detect.run import run_detect

__all__ = [
    "RECIPES", "CocoSplit", "DetectConfig", "DetectData", "DetectOptions", "Detector", "SimplePyramid",
    "ViTDetBackbone", "build_detect_config", "build_detector", "coco_paths", "coco_scores", "export_detector",
    "ground_truth", "load_detect_data", "load_detector", "read_coco", "run_detect", "run_detect_eval",
    "to_coco_results",
]
