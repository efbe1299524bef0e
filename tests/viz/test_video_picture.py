"""The video picture (``hpm visualize`` on a video run): the PNG and GIF are written, the GIF has
the frames asked for, and the maps are what hpm.eval.patch_loss computes for those clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from hpm.cli.main import main
from hpm.config import build_config
from hpm.data.video import MovingOptions, write_moving
from hpm.errors import DataError
from hpm.eval.patch_loss import load_pretrained, real_patch_loss, run_target, teacher_patch_scores
from hpm.masking import get_strategy, num_hard_patches
from hpm.viz.video import (
    ROWS, choose_clips, clip_dataset, clip_normalisation, clip_tiles, compute_clip_maps, token_frames,
    visualize_video,
)
from tests.conftest import needs_fmnist
from tests.data.video.conftest import needs_ffmpeg
from tests.eval.conftest import TINY_MODEL, save_random_run

pytestmark = [needs_fmnist, needs_ffmpeg]
FRAMES, SIZE, TUBELET, PATCH = 4, 16, 2, 4  # 2 x 4 x 4 = 32 tokens


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 8 validation clips of 6 frames at 16 px."""
    out = tmp_path_factory.mktemp("moving") / "data"
    write_moving(out, MovingOptions(num_train=8, num_val=8, frames=6, size=SIZE), progress=False)
    return out


def _run(root: Path, out: Path, strategy: str, teacher_view: str = "full") -> Path:
    """A randomly initialised tiny video run on ``root`` (student, EMA teacher) with ``strategy``."""
    cfg = build_config(overrides={
        "model": {**TINY_MODEL, "preset": "video_small", "num_frames": FRAMES, "tubelet_size": TUBELET,
                  "img_size": SIZE, "patch_size": PATCH, "in_chans": 1},
        "mask": {"strategy": strategy, "ratio": 0.75, "teacher_view": teacher_view},
        "loss": {"predictor": "none" if strategy == "tube" else "relative"},
        "data": {"data_dir": str(root), "channels": 1, "frame_stride": 1},
    })
    return save_random_run(out, cfg, teacher=strategy != "tube")


@pytest.mark.parametrize(("strategy", "view"), [("hpm", "masked"), ("hpm_tube", "full"), ("tube", "full")])
def test_hpm_visualize_writes_the_png_and_a_gif_of_the_frames_asked(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, view: str
) -> None:
    run = _run(videos, tmp_path / "run", strategy, view)
    assert main(["visualize", str(run), "--frames", "0,1,3", "--clips", "3", "--num-masks", "2"]) == 0
    png, gif = run / "figures" / "clips.png", run / "figures" / "clips.gif"
    assert png.is_file() and gif.is_file() and "3 clip(s), frames 0,1,3" in capsys.readouterr().out
    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.info["loop"] == 0
        width, height = animation.size
    assert width > height  # 3 clips (rows) by the 5 map types (columns)
    with Image.open(png) as picture:
        assert picture.size[1] > picture.size[0]  # 3 clips x 5 map types (rows) by 3 frames


def test_the_maps_are_patch_loss_of_the_clips(videos: Path, tmp_path: Path) -> None:
    models = load_pretrained(_run(videos, tmp_path / "run", "hpm", "masked"))
    cfg = models.cfg
    clips, labels = choose_clips(clip_dataset(cfg), [0, 5], 2)  # [2, 1, 4, 16, 16], validation clips
    assert clips.shape == (2, 1, FRAMES, SIZE, SIZE) and labels[1].startswith("val #5 ")
    mean, std = clip_normalisation(cfg, 1)
    maps = compute_clip_maps(models, clips, mean, std, num_masks=3, seed=4)
    real = real_patch_loss(models.student, clips, 3, 0.75, torch.Generator().manual_seed(4), run_target(models))[0]
    teacher = teacher_patch_scores(models.teacher, cfg, clips, torch.Generator().manual_seed(6))
    torch.testing.assert_close(maps.real_loss, real, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(maps.predicted, teacher, rtol=0, atol=0, equal_nan=True)
    assert bool(torch.isnan(teacher).any())  # the masked view leaves some tokens unscored
    # the mask: K tokens, the H hardest scored tokens (at the run's last alpha) chosen by score
    k = get_strategy("hpm").masked_count(32, 0.75)
    assert maps.masked.sum(1).tolist() == [k, k]
    num_hard = num_hard_patches(k, maps.alpha)
    hardest = torch.nan_to_num(teacher, nan=float("-inf")).topk(num_hard, dim=1).indices  # [N, H]
    assert maps.hard.sum(1).tolist() == [num_hard] * 2 and bool(maps.hard.gather(1, hardest).all())
    # the reconstruction keeps the clip where the tubelets are visible
    visible = ~maps.frame_map(maps.masked.float()).bool().unsqueeze(1)  # [N, 1, T, H, W]
    torch.testing.assert_close(maps.reconstruction[visible], maps.pixels[visible], rtol=0, atol=1e-5)


def test_token_maps_cover_their_tubelets_frames() -> None:
    values = torch.arange(2 * 32, dtype=torch.float32).view(2, 32)  # [N, T' H' W'] with T' = 2, H' = W' = 4
    frames = token_frames(values, 2, (4, 4), TUBELET, PATCH)  # [2, 4, 16, 16]
    assert frames.shape == (2, FRAMES, SIZE, SIZE)
    for n in range(2):
        for f in range(FRAMES):
            for y in range(SIZE):
                for x in range(SIZE):
                    token = (f // TUBELET) * 16 + (y // PATCH) * 4 + x // PATCH
                    assert frames[n, f, y, x] == values[n, token]


def test_tube_masks_are_whole_tubes_and_the_tiles_show_the_maps(videos: Path, tmp_path: Path) -> None:
    models = load_pretrained(_run(videos, tmp_path / "run", "hpm_tube"))
    clips, _ = choose_clips(clip_dataset(models.cfg), None, 3)
    maps = compute_clip_maps(models, clips, (0.5,), (0.5,), num_masks=2)
    by_time = maps.masked.view(3, 2, 16)  # [N, T', S]
    assert torch.equal(by_time[:, 0], by_time[:, 1]) and torch.equal(maps.hard.view(3, 2, 16)[:, 0],
                                                                     maps.hard.view(3, 2, 16)[:, 1])
    tiles = clip_tiles(maps, [1, 2])
    assert tiles.rgb.shape == (3, len(ROWS), 2, SIZE, SIZE, 3) and tiles.frames == [1, 2] and not tiles.empty
    low, high = tiles.scales["real_loss"]
    finite = maps.real_loss[torch.isfinite(maps.real_loss)]
    assert (low, high) == (float(finite.min()), float(finite.max()))
    clip_row = ROWS.index("clip")
    assert torch.equal(tiles.rgb[:, clip_row, :, :, :, 0], maps.pixels[:, 0, [1, 2]])  # greyscale as RGB


def test_frames_and_clips_out_of_range_are_refused(videos: Path, tmp_path: Path) -> None:
    run = _run(videos, tmp_path / "run", "tube")
    with pytest.raises(DataError, match=r"frames \[4\] are not in 0..3"):
        visualize_video(run, tmp_path / "out", frames=[0, 4])
    with pytest.raises(DataError, match=r"clip indices \[99\] are not in 0..7 of val"):
        visualize_video(run, tmp_path / "out", indices=[99])
    assert main(["visualize", str(run), "--images", "x.png"]) == 2
