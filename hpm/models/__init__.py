"""Models: the masked autoencoder with its loss-predictor branch."""

from hpm.models.mae import MaeOutput, MaskedAutoencoder, build_model, build_run_model

__all__ = ["MaeOutput", "MaskedAutoencoder", "build_model", "build_run_model"]
