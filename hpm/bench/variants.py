"""The benchmark's variants: MAE, HPM and its ablations, AttMask, each as a config, eager or compiled."""

from __future__ import annotations

from typing import Any

from hpm.config import Config, _deep_merge, config_from_dict

COMPILED = "@compiled"  # suffix of a compiled variant's name
COMPILE_MODES = ("auto", "off", "on", "both")
VARIANTS = ("mae", "hpm", "hpm_masked", "hpm_efficient", "random_predictor", "attention", "attention_predictor",
            "videomae", "hpm_tube")
# What each variant with a loss predictor changes (on top of the relative objective):
# hpm: the paper's full-image teacher; hpm_masked: the teacher scores a random partial view;
# hpm_efficient: that, with a shallow loss predictor (configs/ablations/efficient.yaml);
# random_predictor: random masks, the predictor trained, no teacher (the objective alone);
# attention_predictor: AttMask's full-image [CLS] attention chooses the mask (hints mode), the
# one-block predictor trained beside it. The paper's loss predictor is as deep as the decoder
# (predictor_depth None).
_ATTENTION_MASK = {"strategy": "attention", "teacher_view": "full", "attention_mode": "hints"}
PREDICTOR_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "hpm": {"mask": {"strategy": "hpm", "teacher_view": "full"}, "model": {"predictor_depth": None}},
    "hpm_masked": {"mask": {"strategy": "hpm", "teacher_view": "masked"}, "model": {"predictor_depth": None}},
    "hpm_efficient": {"mask": {"strategy": "hpm", "teacher_view": "masked"}, "model": {"predictor_depth": 1}},
    "random_predictor": {"mask": {"strategy": "random"}, "model": {"predictor_depth": None}},
    "attention_predictor": {"mask": _ATTENTION_MASK, "model": {"predictor_depth": 1}},
    # video models only: HPM on tubes, the full-view teacher's predicted loss averaged over time
    "hpm_tube": {"mask": {"strategy": "hpm_tube", "teacher_view": "full"}, "model": {"predictor_depth": None}},
}
# Variants without a loss predictor besides MAE: attention, an EMA encoder's attention chooses the
# mask; videomae (video models only), tube masking.
PLAIN_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "attention": {"mask": _ATTENTION_MASK, "loss": {"predictor": "none"}},
    "videomae": {"mask": {"strategy": "tube"}, "loss": {"predictor": "none"}},
}
DEFAULT_VARIANTS = ("mae", "hpm", "hpm_masked", "hpm_efficient", "attention", "attention_predictor")


def variant_config(base: Config, variant: str, mask: str) -> Config:
    """The config of a benchmark variant: ``mae`` (no predictor, ``mask`` masking), ``attention``
    (:data:`PLAIN_VARIANTS`) or a variant with the loss predictor (:data:`PREDICTOR_VARIANTS`)."""
    raw = base.model_dump(mode="json")
    if variant == "mae":
        raw["mask"]["strategy"] = mask
        raw["loss"]["predictor"] = "none"
    elif variant in PLAIN_VARIANTS:
        raw = _deep_merge(raw, PLAIN_VARIANTS[variant])
    elif variant in PREDICTOR_VARIANTS:
        raw["loss"]["predictor"] = "relative"
        raw = _deep_merge(raw, PREDICTOR_VARIANTS[variant])
    else:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return config_from_dict(raw)


def compile_variants(cfgs: dict[str, Config], mode: str) -> dict[str, Config]:
    """The variants with ``train.compile`` set: as given (``auto``), off, on, or both
    (each variant and its ``@compiled`` twin)."""
    if mode == "auto":
        return cfgs
    out: dict[str, Config] = {}
    for name, cfg in cfgs.items():
        if mode in ("off", "both"):
            out[name] = _with_compile(cfg, False)
        if mode in ("on", "both"):
            out[name + (COMPILED if mode == "both" else "")] = _with_compile(cfg, True)
    return out


def _with_compile(cfg: Config, enabled: bool) -> Config:
    out = cfg.model_copy(deep=True)
    out.train.compile = enabled
    return out
