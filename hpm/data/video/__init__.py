"""Video clips: decoding and lossless encoding (torchcodec), folders of frames, VideoMAE's clip
sampling, one crop for a whole clip, a clip folder data set (and the pre-training clips it
gives), and Moving Fashion-MNIST (``hpm data moving``)."""

from hpm.data.video.augment import build_clip_transform
from hpm.data.video.dataset import VideoClipDataset, is_video_dir, video_layout
from hpm.data.video.decode import VIDEO_EXTENSIONS, UnreadableVideo, VideoFile
from hpm.data.video.encode import write_video
from hpm.data.video.frames import FrameFolder, is_frame_folder
from hpm.data.video.listing import is_video_file
from hpm.data.video.moving import MOTIONS, MovingClip, moving_clip
from hpm.data.video.pretrain import KeyedSubset, open_video_clips
from hpm.data.video.read import open_video, read_clip, read_frames, video_length
from hpm.data.video.sampling import clip_indices, clip_span, clip_start
from hpm.data.video.write import MovingOptions, MovingSummary, clip_rng, write_moving

__all__ = [
    "MOTIONS",
    "VIDEO_EXTENSIONS",
    "FrameFolder",
    "KeyedSubset",
    "MovingClip",
    "MovingOptions",
    "MovingSummary",
    "UnreadableVideo",
    "VideoClipDataset",
    "VideoFile",
    "build_clip_transform",
    "clip_indices",
    "clip_rng",
    "clip_span",
    "clip_start",
    "is_frame_folder",
    "is_video_dir",
    "is_video_file",
    "moving_clip",
    "open_video",
    "open_video_clips",
    "read_clip",
    "read_frames",
    "video_layout",
    "video_length",
    "write_moving",
    "write_video",
]
