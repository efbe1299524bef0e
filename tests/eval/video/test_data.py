"""Labelled clip splits: the class folders, the motion and class labels of the clip listing,
few labels (class-balanced, nested) and the label a folder does not have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hpm.data.fashion_mnist import FASHION_MNIST_CLASSES
from hpm.data.labels import LabelCount
from hpm.data.video import MOTIONS
from hpm.errors import ConfigError, DataError
from hpm.eval.video import VideoOptions, build_video_eval_data
from tests.eval.video.conftest import NUM_TRAIN, NUM_VAL, video_config


def test_motion_labels_are_the_folders_and_class_labels_differ(clips: Path) -> None:
    cfg = video_config(clips)
    folder, motion, klass = (build_video_eval_data(cfg, None, VideoOptions(label=k)) for k in (None, "motion", "class"))
    assert (folder.kind, motion.kind, klass.kind) == ("folder", "motion", "class")
    assert len(folder.train) == NUM_TRAIN and len(folder.test) == NUM_VAL
    assert motion.classes == MOTIONS and klass.classes == FASHION_MNIST_CLASSES
    assert motion.train.files == folder.train.files == klass.train.files
    # the folder of each clip names its motion; its class is the first item's, from the listing
    assert [folder.classes[i] for i in folder.train.labels] == [motion.classes[i] for i in motion.train.labels]
    listing = {c["file"]: c for c in json.loads((clips / "train.json").read_text())["clips"]}
    for path, label in zip(klass.train.files, klass.train.labels):
        assert listing[str(Path(path).relative_to(clips))]["class"] == label
    motion_names = [motion.classes[i] for i in motion.train.labels]
    class_names = [klass.classes[i] for i in klass.train.labels]
    assert motion_names != class_names and not np.array_equal(motion.train.labels, klass.train.labels)


def test_few_labels_are_class_balanced_and_nested(clips: Path) -> None:
    cfg = video_config(clips)
    chosen = {}
    for n in (8, 16):
        data = build_video_eval_data(cfg, None, VideoOptions(label="class"), seed=3, labels=LabelCount(count=n))
        assert len(data.train) == n and data.labels == {"count": n, "asked": str(n), "seed": 3, "of": NUM_TRAIN}
        assert len(data.test) == NUM_VAL
        full = build_video_eval_data(cfg, None, VideoOptions(label="class")).train
        available = np.bincount(full.labels, minlength=10)
        taken = np.bincount(data.train.labels, minlength=10)
        short = taken < available  # classes that could have given more
        assert taken[short].min() >= taken.max() - 1, (taken, available)
        chosen[n] = set(data.train.files)
    assert chosen[8] < chosen[16]


def test_a_label_the_data_do_not_have_is_a_clear_error(clips: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(clips / "train", bare / "train")
    shutil.copytree(clips / "val", bare / "val")
    with pytest.raises(DataError, match=r"--label class reads each clip's class from .*train\.json, which does not "
                                        r"exist; leave --label out for the class folders"):
        build_video_eval_data(video_config(bare), None, VideoOptions(label="class"))
    assert build_video_eval_data(video_config(bare), None, VideoOptions()).num_classes == len(MOTIONS)
    with pytest.raises(ConfigError, match="unknown --label 'colour'; use motion or class"):
        VideoOptions(label="colour")
    with pytest.raises(DataError, match="pass --data-dir DIR"):
        build_video_eval_data(video_config(None), None, VideoOptions())
