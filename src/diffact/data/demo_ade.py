"""A demo semantic-segmentation dataset in ADE20K's mmseg layout, for the demo Table 2 (left) (paper §2.9).

The scenes are the *complex* demo scenes of :mod:`diffact.data.demo_seg` (a room with wall, floor, window,
table, ball, a small animal and clutter), drawn by the same code, so no drawing is duplicated here. Their
``other`` label (0: the clutter) plays ADE20K's "other" (0): ignored after ``reduce_zero_label``, exactly as on
ADE20K, leaving 6 classes. Written atomically::

    OUT/dataset.json                                   class names, counts, pixel counts per class
    OUT/images/training/ADE_train_00000000.jpg         OUT/annotations/training/ADE_train_00000000.png
    OUT/images/validation/ADE_val_00000048.jpg         OUT/annotations/validation/ADE_val_00000048.png

Image ``i`` is drawn from ``numpy_rng(derive_seed(seed, "ade"), "demo_seg", "complex", i)``, so it does not depend
on how many images are requested and differs from the label-scarce demo sets built with the same seed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from diffact.data.demo_seg import COMPLEX_CLASSES, TextureBank, draw_demo_image
from diffact.utils.errors import ConfigError
from diffact.utils.io import atomic_dir, write_json
from diffact.utils.seeding import derive_seed

log = logging.getLogger(__name__)

SCENE = "complex"
OTHER = COMPLEX_CLASSES.index("other")  # = 0, ADE20K's "other"
CLASSES = tuple(c for c in COMPLEX_CLASSES if c != "other")  # class k+1 of the PNG is class k after reduce_zero_label


@dataclasses.dataclass(frozen=True)
class DemoAdeConfig:
    """Size of the demo set (paper ADE20K: 20,210 / 2,000 images, 150 classes, short side 512 px)."""

    size: int = 64
    n_train: int = 48
    n_val: int = 16
    seed: int = 0

    def validate(self) -> None:
        if OTHER != 0:
            raise ConfigError("demo_seg.COMPLEX_CLASSES must start with 'other' (ADE20K's label 0)")
        if self.size < 32:
            raise ConfigError(f"demo ADE20K image size must be at least 32 px, got {self.size}")
        if self.n_train < 1 or self.n_val < 1:
            raise ConfigError(f"need at least one training and one validation image, got {self.n_train}/{self.n_val}")


def make_demo_ade(out: str | Path, config: DemoAdeConfig) -> Path:
    """Write the demo set; ``out`` appears complete or not at all."""
    from PIL import Image

    from diffact.data.images import save_jpeg

    config.validate()
    out, bank = Path(out), TextureBank()
    seed = derive_seed(config.seed, "ade")
    counts = np.zeros(len(COMPLEX_CLASSES), dtype=np.int64)
    splits = (("training", "train", range(config.n_train)),
              ("validation", "val", range(config.n_train, config.n_train + config.n_val)))
    with atomic_dir(out) as tmp:
        for split, prefix, indices in splits:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            for index in indices:
                image, label = draw_demo_image(SCENE, index, config.size, seed, bank)
                counts += np.bincount(label.ravel(), minlength=len(COMPLEX_CLASSES))[: len(COMPLEX_CLASSES)]
                stem = f"ADE_{prefix}_{index:08d}"
                save_jpeg(image, tmp / "images" / split / f"{stem}.jpg")
                Image.fromarray(label).save(tmp / "annotations" / split / f"{stem}.png")
        write_json(tmp / "dataset.json", {
            "name": "demo-ade20k",
            "layout": "ade20k",
            "num_classes": len(CLASSES),
            "class_names": list(CLASSES),
            "reduce_zero_label": True,
            "train_count": config.n_train,
            "val_count": config.n_val,
            "size": config.size,
            "seed": config.seed,
            "raw_pixel_counts": dict(zip(COMPLEX_CLASSES, counts.tolist())),
            "note": "complex demo scenes of diffact.data.demo_seg in ADE20K's layout; PNG 0 = other (ignored)",
        })
    log.info("wrote the demo ADE20K-layout set (%d training + %d validation, %d px) to %s", config.n_train,
             config.n_val, config.size, out)
    return out
