"""The video version of the Figure-2 panels (``hpm visualize`` on a video run).

For a few validation clips (rows) and a handful of frames (default: every tubelet's first): the
frames, the real per-token loss averaged over random masks, the loss predictor's score as the
run's teacher computes it, the mask the run's ``mask.strategy`` draws (red: chosen by score,
grey: at random; whole tubes for ``tube`` / ``hpm_tube``) and the reconstruction under it with
the visible tubelets pasted back. Token maps are shown on the frames of their tubelet. The same
tiles go into a PNG (one row per clip and map type, one column per frame) and an animated GIF
beside it (one row per clip, one column per map type, the frames over time).

Modules: :mod:`~.maps` (what is shown), :mod:`~.tiles` (as pixels), :mod:`~.drawing` (PNG and
GIF), :mod:`~.clips` (which clips) and :mod:`~.command` (``hpm visualize``).
"""

from hpm.viz.video.clips import DEFAULT_CLIPS, choose_clips, clip_dataset, clip_normalisation
from hpm.viz.video.command import DEFAULT_FILE, VideoPictureResult, default_frames, is_video_run, visualize_video
from hpm.viz.video.drawing import draw_clip_figure, gif_frames, write_gif
from hpm.viz.video.maps import ClipMaps, clip_mask, compute_clip_maps, denormalise_clips, token_frames
from hpm.viz.video.tiles import ROWS, ClipTiles, clip_tiles

__all__ = [
    "DEFAULT_CLIPS", "DEFAULT_FILE", "ROWS", "ClipMaps", "ClipTiles", "VideoPictureResult", "choose_clips",
    "clip_dataset", "clip_mask", "clip_normalisation", "clip_tiles", "compute_clip_maps", "default_frames",
    "denormalise_clips", "draw_clip_figure", "gif_frames", "is_video_run", "token_frames", "visualize_video",
    "write_gif",
]
