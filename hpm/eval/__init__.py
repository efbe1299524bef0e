"""Evaluation of pre-trained encoders: k-NN, linear probe and fine-tuning (``hpm eval``)."""

from hpm.eval.data import EvalData, EvalSplit, build_eval_data
from hpm.eval.encoder import LoadedEncoder, extract_features, load_encoder, load_model_from_checkpoint
from hpm.eval.finetune import RECIPES, FinetuneConfig, build_finetune_config, run_finetune
from hpm.eval.knn import knn_classify, knn_eval, knn_predict, run_knn
from hpm.eval.linear import LinearProbeConfig, run_linear, train_linear_probe
from hpm.eval.run import EvalOptions, run_eval

__all__ = [
    "RECIPES",
    "EvalData",
    "EvalOptions",
    "EvalSplit",
    "FinetuneConfig",
    "LinearProbeConfig",
    "LoadedEncoder",
    "build_eval_data",
    "build_finetune_config",
    "extract_features",
    "knn_classify",
    "knn_eval",
    "knn_predict",
    "load_encoder",
    "load_model_from_checkpoint",
    "run_eval",
    "run_finetune",
    "run_knn",
    "run_linear",
    "train_linear_probe",
]
