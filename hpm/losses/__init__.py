"""Objectives: reconstruction of masked patches and prediction of their losses."""

from hpm.losses.loss_prediction import absolute_loss, loss_prediction_loss, relative_loss
from hpm.losses.reconstruction import patch_targets, reconstruction_loss

__all__ = ["absolute_loss", "loss_prediction_loss", "patch_targets", "reconstruction_loss", "relative_loss"]
