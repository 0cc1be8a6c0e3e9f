"""Cityscapes in mmsegmentation's folder layout, for Table 2 (left) (paper §2.9)::

    ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

The ``labelTrainIds`` maps (19 classes 0..18, 255 = ignored) are not in the download: mmseg's
``tools/dataset_converters/cityscapes.py`` makes them from the polygons (it needs ``cityscapesscripts``), and
:func:`write_train_ids` here makes the same maps from the shipped ``*_gtFine_labelIds.png`` with the official
id → trainId table (``diffact cityscapes-train-ids --root ROOT``). Official counts: 2,975 train, 500 val images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffact.data.ade20k import IGNORE_INDEX, SegPair, check_pairs
from diffact.utils.errors import DataError

SPLITS = ("train", "val")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validation": "val"}
OFFICIAL_COUNTS = {"train": 2975, "val": 500}
NUM_CLASSES = 19
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"

# Cityscapes label id → train id (cityscapesscripts/helpers/labels.py); every id not listed is ignored (255).
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def split_name(split: str) -> str:
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise DataError(f"unknown Cityscapes split {split!r}; expected one of {', '.join(SPLIT_ALIASES)}") from None


def _frames(folder: Path, suffix: str) -> dict[str, Path]:
    """``<city>/<city>_<seq>_<frame>`` → file, over the city subfolders of ``folder``."""
    if not folder.is_dir():
        return {}
    return {f"{p.parent.name}/{p.name[: -len(suffix)]}": p for p in folder.glob(f"*/*{suffix}")}


def cityscapes_pairs(root: str | Path, split: str) -> list[SegPair]:
    """Every (image, labelTrainIds) pair of a split, sorted; ids are ``<split>/<city>/<frame>``."""
    root, split = Path(root), split_name(split)
    images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: missing (Cityscapes layout: leftImg8bit/{split}, gtFine/{split} under {root})")
    images, labels = _frames(images_dir, IMAGE_SUFFIX), _frames(labels_dir, LABEL_SUFFIX)
    if not images:
        raise DataError(f"{images_dir}: no <city>/*{IMAGE_SUFFIX} images")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(f"{labels_dir}: no {LABEL_SUFFIX} for {len(missing)} image(s), e.g. {missing[0]}; "
                        "make them with `diffact cityscapes-train-ids --root ROOT`")
    return [SegPair(f"{split}/{key}", images[key], labels[key]) for key in sorted(images)]


def load_cityscapes_label(path: str | Path) -> np.ndarray:
    """H×W uint8 train-id map (0..18, 255 = ignored)."""
    from diffact.data.ade20k import _read_label

    return _read_label(Path(path))


def train_id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


def write_train_ids(root: str | Path, overwrite: bool = False) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` beside every ``*_gtFine_labelIds.png`` (atomically); returns how many."""
    from PIL import Image

    from diffact.data.ade20k import _read_label
    from diffact.utils.io import atomic_path

    root, lut, written = Path(root), train_id_lut(), 0
    sources = sorted((root / "gtFine").glob(f"*/*/*{LABEL_ID_SUFFIX}"))
    if not sources:
        raise DataError(f"{root / 'gtFine'}: no <split>/<city>/*{LABEL_ID_SUFFIX} files to convert")
    for source in sources:
        target = source.with_name(source.name[: -len(LABEL_ID_SUFFIX)] + LABEL_SUFFIX)
        if target.exists() and not overwrite:
            continue
        with atomic_path(target) as tmp:
            Image.fromarray(lut[_read_label(source)]).save(tmp, format="PNG")
        written += 1
    return written


def check_cityscapes(root: str | Path, official_counts: bool = True) -> list[str]:
    """Every problem of a Cityscapes-layout root, as messages naming the file or folder; empty = ready to train.

    Checks the folders, image ↔ labelTrainIds pairing (with a hint when only labelIds exist), header sizes, label
    values (0..18 or 255) of a sample, and the official image counts (unless ``official_counts`` is False).
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: Cityscapes root does not exist (expected leftImg8bit/ and gtFine/ with train/ and val/)"]
    problems = []
    for split in SPLITS:
        images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        missing = [d for d in (images_dir, labels_dir) if not d.is_dir()]
        if missing:
            problems += [f"{d}: missing folder (Cityscapes layout)" for d in missing]
            continue
        images, labels = _frames(images_dir, IMAGE_SUFFIX), _frames(labels_dir, LABEL_SUFFIX)
        if not images:
            problems.append(f"{images_dir}: no <city>/*{IMAGE_SUFFIX} images")
            continue
        if official_counts and len(images) != OFFICIAL_COUNTS[split]:
            problems.append(f"{images_dir}: {len(images)} images, expected {OFFICIAL_COUNTS[split]} (official release)")
        if not labels and _frames(labels_dir, LABEL_ID_SUFFIX):
            problems.append(f"{labels_dir}: has *{LABEL_ID_SUFFIX} but no *{LABEL_SUFFIX}; make them with "
                            f"`diffact cityscapes-train-ids --root {root}` (or mmseg's cityscapes converter)")
            continue
        problems += check_pairs(images, labels, images_dir, labels_dir, LABEL_SUFFIX, max_label=NUM_CLASSES - 1)
    return problems

