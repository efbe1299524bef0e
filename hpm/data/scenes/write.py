"""``hpm data scenes``: write the scenes data set in ADE20K's layout plus COCO instance files.

``OUT/images/{training,validation}/NNNNNN.png`` (RGB scenes),
``OUT/annotations/{training,validation}/NNNNNN.png`` (mode ``L`` index maps: 0 background,
1-10 the class + 1) and ``OUT/annotations/instances_{training,validation}.json``. Training
scenes take their items from Fashion-MNIST's train split, validation scenes from its test split.
Scene ``i`` of a split is drawn from its own generator seeded by ``(seed, split, i)``, so the
files do not depend on how the work is divided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from hpm.config import FASHION_MNIST_ROOT
from hpm.data.fashion_mnist import load_fashion_mnist
from hpm.data.generator_out import check_generator_out, remove_outputs
from hpm.data.scenes.coco import CocoInstances
from hpm.data.scenes.compose import compose_scene
from hpm.errors import ConfigError

Split = Literal["training", "validation"]
SPLITS: tuple[Split, ...] = ("training", "validation")
SOURCE_SPLIT: dict[Split, Literal["train", "test"]] = {"training": "train", "validation": "test"}
_SPLIT_KEY: dict[Split, int] = {"training": 0, "validation": 1}
MIN_SIZE = 32


@dataclass(frozen=True)
class SceneOptions:
    """What to generate.

    Attributes:
        num_train: Training scenes (items from Fashion-MNIST's train split).
        num_val: Validation scenes (items from its test split).
        size: Scene side in pixels.
        seed: Seeds every scene (with its split and index).
    """

    num_train: int = 20_000
    num_val: int = 2_000
    size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_train < 0 or self.num_val < 0 or self.num_train + self.num_val == 0:
            raise ConfigError(
                f"--num-train ({self.num_train}) and --num-val ({self.num_val}) must be >= 0 "
                "and not both 0"
            )
        if self.size < MIN_SIZE:
            raise ConfigError(f"--size must be at least {MIN_SIZE} pixels, got {self.size}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")

    def count(self, split: Split) -> int:
        """Scenes of ``split``."""
        return self.num_train if split == "training" else self.num_val


@dataclass
class ScenesSummary:
    """What was written: scenes and COCO instances per split."""

    out: Path
    scenes: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)


def scene_rng(seed: int, split: Split, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_KEY[split], index])


def _output_paths(out: Path, split: Split) -> list[Path]:
    return [
        out / "images" / split,
        out / "annotations" / split,
        out / "annotations" / f"instances_{split}.json",
    ]


def write_split(
    out: Path, split: Split, options: SceneOptions, images: np.ndarray, labels: np.ndarray, progress: bool
) -> int:
    """Write one split's scenes, index maps and COCO file.

    Args:
        out: The data set's root folder.
        split: ``"training"`` or ``"validation"``.
        options: What to generate.
        images: uint8 ``[N, 28, 28]`` items of the split's Fashion-MNIST source.
        labels: int ``[N]`` their classes.
        progress: Show a progress bar.

    Returns:
        The number of COCO instances written.
    """
    image_dir, map_dir, json_path = _output_paths(out, split)
    image_dir.mkdir(parents=True, exist_ok=True)
    map_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "description": "hpm scenes: Fashion-MNIST items on cluttered backgrounds",
        "split": split,
        "source": f"fashion-mnist {SOURCE_SPLIT[split]}",
        "seed": options.seed,
        "size": options.size,
    }
    coco = CocoInstances(info)
    count = options.count(split)
    for index in tqdm(range(count), desc=f"scenes {split}", unit="scene", disable=not progress):
        scene = compose_scene(scene_rng(options.seed, split, index), images, labels, options.size)
        name = f"{index:06d}.png"
        Image.fromarray(scene.image).save(image_dir / name)
        Image.fromarray(scene.index_map).save(map_dir / name)
        coco.add(scene, image_id=index + 1, file_name=name)
    coco.write(json_path)
    return len(coco.annotations)


def write_scenes(
    out: str | Path,
    options: SceneOptions,
    root: str | Path = FASHION_MNIST_ROOT,
    overwrite: bool = False,
    progress: bool = True,
) -> ScenesSummary:
    """Write the scenes data set (see the module docstring for the layout).

    Args:
        out: Output folder; created, or refused when it holds anything unless ``overwrite``.
        options: What to generate.
        root: Folder of Fashion-MNIST's gzipped IDX files.
        overwrite: Replace the scenes of an existing data set in ``out``.
        progress: Show progress bars.

    Returns:
        Scenes and instances written per split.

    Raises:
        ConfigError: ``out`` is not empty (without ``overwrite``) or not a folder.
        DataError: Fashion-MNIST is missing or unreadable (the message says what to install).
    """
    out = Path(out)
    check_generator_out(out, overwrite, "scenes")
    splits = [split for split in SPLITS if options.count(split) > 0]
    sources = {split: load_fashion_mnist(root, SOURCE_SPLIT[split]) for split in splits}
    remove_outputs(p for split in SPLITS for p in _output_paths(out, split))
    summary = ScenesSummary(out=out)
    for split in splits:
        images, labels = sources[split]
        summary.instances[split] = write_split(out, split, options, images, labels, progress)
        summary.scenes[split] = options.count(split)
    return summary
