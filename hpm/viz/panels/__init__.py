"""Figure-2-style panels of a pre-trained model (``hpm visualize``).

One row per image: the input; the real per-patch reconstruction loss averaged over ``M`` random
masks; the loss predictor's score as the run's teacher computes it (``mask.teacher_view``: the
full image, or random partial views, where the patches no view hid have no score and are drawn
grey; the student's full-image score where the run has a predictor but no teacher); the HPM mask
at a chosen α (the ``H = int(K·α)`` patches the predictor ranks hardest, or easiest for
``mask.select=easiest``, plus ``K - H`` random ones); and the reconstruction under that mask with
the visible patches pasted back, de-normalised, or, for a run whose target is not pixels
(``loss.target`` hog, ema, model), a picture of the target (:mod:`hpm.viz.target_view`: HOG as
oriented bars, features as a PCA map). Each map type shares one colour scale over all rows.

An MAE run (no loss predictor) keeps its predicted-loss and HPM-mask panels, empty and titled
"no loss predictor (MAE run)"; its reconstruction uses a random mask of the run's ratio.

An attention run (``mask.strategy=attention``, AttMask) has one more panel, after the predicted
loss: the EMA teacher's [CLS] attention as the run computes it to choose masks (last block, mean
over heads; the patches a masked view hid have no score, grey); its mask panel is the attention
mask (``attention_mode`` high, low or hints, with the hints shown) and its predicted-loss panel
the teacher's full-image predicted loss when the run trains a predictor, else empty.

Modules: :mod:`~.maps` (what is shown), :mod:`~.reconstruction`, :mod:`~.titles`,
:mod:`~.drawing`, :mod:`~.images` (which images) and :mod:`~.command` (``hpm visualize``).
"""

from hpm.viz.panels.command import PanelsResult, visualize
from hpm.viz.panels.drawing import DPI, PANEL_INCHES, draw_panels, figure_size
from hpm.viz.panels.images import DEFAULT_IMAGES, choose_images, default_indices, file_images, split_images
from hpm.viz.panels.maps import ATTENTION_COLUMNS, COLUMNS, PatchMaps, compute_maps, final_alpha
from hpm.viz.panels.reconstruction import reconstruct, target_picture
from hpm.viz.panels.titles import NO_PREDICTOR, NO_PREDICTOR_ATTENTION, column_titles

__all__ = [
    "ATTENTION_COLUMNS", "COLUMNS", "DEFAULT_IMAGES", "DPI", "NO_PREDICTOR", "NO_PREDICTOR_ATTENTION", "PANEL_INCHES",
    "PanelsResult", "PatchMaps", "choose_images", "column_titles", "compute_maps", "default_indices", "draw_panels",
    "figure_size", "file_images", "final_alpha", "reconstruct", "split_images", "target_picture", "visualize",
]
