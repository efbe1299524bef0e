"""Scenes made from real Fashion-MNIST items: tinted, scaled, stacked with occlusion on
cluttered backgrounds, written in ADE20K's layout with COCO instance files (``hpm data scenes``)."""

from hpm.data.scenes.coco import CocoInstances, coco_categories, encode_rle, mask_bbox
from hpm.data.scenes.compose import Scene, compose_scene
from hpm.data.scenes.write import SPLITS, SOURCE_SPLIT, SceneOptions, ScenesSummary, scene_rng, write_scenes

__all__ = [
    "SOURCE_SPLIT",
    "SPLITS",
    "CocoInstances",
    "Scene",
    "SceneOptions",
    "ScenesSummary",
    "coco_categories",
    "compose_scene",
    "encode_rle",
    "mask_bbox",
    "scene_rng",
    "write_scenes",
]
