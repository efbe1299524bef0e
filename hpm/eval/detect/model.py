"""The detector: torchvision's Mask R-CNN (RPN, RoIAlign box and mask heads) on :class:`ViTDetBackbone`."""

from __future__ import annotations

from typing import Any

from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from hpm.eval.detect.backbone import ViTDetBackbone
from hpm.eval.detect.recipes import DetectConfig
from hpm.models.mae import MaskedAutoencoder
from hpm.models.timm_encoder import build_timm_encoder

LEVELS = ["0", "1", "2", "3"]  # the pyramid's maps, finest first


def _under(prefix: str, pattern: str) -> str:
    """A timm group pattern (anchored at the ViT's names) anchored at ``prefix``."""
    return "^" + prefix.replace(".", r"\.") + "(?:" + pattern.removeprefix("^") + ")"


class Detector(MaskRCNN):
    """Mask R-CNN on a ViT's simple pyramid; adds the ViT's layer groups (layer-wise lr decay) and
    its parameters without weight decay, both under ``backbone.vit.``."""

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The ViT's layer groups; the pyramid's and the heads' parameters match none and take the top layer's lr."""
        groups = self.backbone.vit.group_matcher(coarse)
        prefix = "backbone.vit."
        return {
            name: _under(prefix, rule) if isinstance(rule, str) else [(_under(prefix, p), order) for p, order in rule]
            for name, rule in groups.items()
        }

    def no_weight_decay(self) -> set[str]:
        """The ViT's position embedding and class token."""
        return {f"backbone.vit.{name}" for name in self.backbone.vit.no_weight_decay()}


def anchor_generator(backbone: ViTDetBackbone, cfg: DetectConfig) -> AnchorGenerator:
    """One anchor size per level, ``anchor_scale`` times its stride, at every aspect ratio."""
    sizes = tuple((float(cfg.anchor_scale * stride),) for stride in backbone.strides)
    return AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))


def build_detector(
    encoder: MaskedAutoencoder, cfg: DetectConfig, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...],
) -> Detector:
    """The detector of ``encoder`` (its weights copied into a timm ViT taking any multiple of its
    patch) for ``num_classes`` categories plus background.

    Args:
        encoder: The pre-trained (or random) masked autoencoder; not modified.
        cfg: The recipe (image size, anchors, drop path, pyramid width, detections).
        num_classes: Categories, background not counted.
        mean: The encoder's normalisation mean per channel (images come in [0, 1]).
        std: Its std.
    """
    vit = build_timm_encoder(encoder, global_pool="token", num_classes=0, drop_path_rate=cfg.drop_path,
                             dynamic_img_size=True)
    vit.prune_intermediate_layers([len(vit.blocks) - 1], prune_norm=True, prune_head=True)
    backbone = ViTDetBackbone(vit, cfg.pyramid_channels)
    width, classes = cfg.pyramid_channels, num_classes + 1
    model = Detector(
        backbone, min_size=cfg.image_size, max_size=cfg.image_size, image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchor_generator(backbone, cfg),
        rpn_pre_nms_top_n_train=cfg.rpn_proposals, rpn_post_nms_top_n_train=cfg.rpn_proposals,
        rpn_pre_nms_top_n_test=cfg.rpn_proposals, rpn_post_nms_top_n_test=cfg.rpn_proposals,
        box_roi_pool=MultiScaleRoIAlign(LEVELS, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(width * 7 * 7, cfg.box_head_dim),
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, classes),
        box_batch_size_per_image=cfg.roi_batch,
        mask_roi_pool=MultiScaleRoIAlign(LEVELS, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(width, [cfg.mask_head_dim] * 4, 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_head_dim, cfg.mask_head_dim, classes),
        box_detections_per_img=cfg.detections_per_img, box_score_thresh=cfg.score_thresh,
    )
    model.transform.size_divisible = 2 * backbone.patch_size  # the coarsest level halves the patch grid
    return model
