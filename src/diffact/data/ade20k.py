"""ADE20K (ADEChallengeData2016) in mmsegmentation's folder layout, for Table 2 (left) (paper §2.9)::

    ROOT/images/training/ADE_train_00000001.jpg        ROOT/annotations/training/ADE_train_00000001.png
    ROOT/images/validation/ADE_val_00000001.jpg        ROOT/annotations/validation/ADE_val_00000001.png

Annotations are single-channel uint8 PNGs: 0 = "other" (not one of the 150 classes), 1..150 = the classes.
mmseg's ``ADE20KDataset`` reads them with ``reduce_zero_label=True`` (0 → 255 = ignored, k → k−1), and so does
:func:`load_ade20k_label` here. The demo builder (:mod:`diffact.data.demo_ade`) writes the same layout plus a
``dataset.json`` naming its classes and counts; a root without that file is checked against the official release
(20,210 training and 2,000 validation images, 150 classes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffact.utils.errors import DataError

SPLITS = ("training", "validation")
SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
OFFICIAL_COUNTS = {"training": 20210, "validation": 2000}
NUM_CLASSES = 150
IGNORE_INDEX = 255
IMAGE_SUFFIX = ".jpg"
LABEL_SUFFIX = ".png"
DATASET_JSON = "dataset.json"
# Label values are decoded for this many annotations per split (the rest: header size only), so a check of the
# full release stays quick.
LABEL_SAMPLES = 20
EXAMPLES = 3  # file names quoted per problem


@dataclass(frozen=True)
class SegPair:
    """One image and its label map. ``id`` is ``<split>/<stem>`` (the feature-store shard name)."""

    id: str
    image: Path
    label: Path


def split_name(split: str) -> str:
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise DataError(f"unknown ADE20K split {split!r}; expected one of {', '.join(SPLIT_ALIASES)}") from None


def read_meta(root: str | Path) -> dict | None:
    """The demo's ``dataset.json`` (class names, counts), or None for a real ADE20K root."""
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def num_classes(root: str | Path) -> int:
    """Classes after reduce_zero_label: the demo's ``num_classes`` or ADE20K's 150."""
    meta = read_meta(root)
    return int(meta["num_classes"]) if meta else NUM_CLASSES


def class_names(root: str | Path) -> list[str]:
    meta = read_meta(root)
    if meta:
        return list(meta["class_names"])
    from mmseg.datasets import ADE20KDataset

    return list(ADE20KDataset.METAINFO["classes"])


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() == suffix} if folder.is_dir() else {}


def ade20k_pairs(root: str | Path, split: str) -> list[SegPair]:
    """Every (image, annotation) pair of a split, sorted by id; DataError if a folder or an annotation is missing."""
    root, split = Path(root), split_name(split)
    images_dir, labels_dir = root / "images" / split, root / "annotations" / split
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: missing (ADE20K layout: images/{split}, annotations/{split} under {root})")
    images, labels = _stems(images_dir, IMAGE_SUFFIX), _stems(labels_dir, LABEL_SUFFIX)
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(f"{labels_dir}: no annotation for {len(missing)} image(s), e.g. {missing[0]}{LABEL_SUFFIX}")
    if not images:
        raise DataError(f"{images_dir}: no *{IMAGE_SUFFIX} images")
    return [SegPair(f"{split}/{stem}", images[stem], labels[stem]) for stem in sorted(images)]


def load_ade20k_label(path: str | Path) -> np.ndarray:
    """H×W uint8 label map after reduce_zero_label (0 → 255, k → k−1), as mmseg's LoadAnnotations does."""
    raw = _read_label(Path(path))
    reduced = raw.astype(np.int16) - 1
    reduced[raw == 0] = IGNORE_INDEX
    return reduced.astype(np.uint8)


def _read_label(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise DataError(f"{path}: label map must be a single-channel PNG (mode L or P), got mode {img.mode}")
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable PNG label map ({err})") from err


def _examples(names) -> str:
    names = sorted(names)
    more = f" (and {len(names) - EXAMPLES} more)" if len(names) > EXAMPLES else ""
    return ", ".join(str(n) for n in names[:EXAMPLES]) + more


def check_pairs(images: dict[str, Path], labels: dict[str, Path], where_images: Path, where_labels: Path,
                label_suffix: str, max_label: int, samples: int = LABEL_SAMPLES) -> list[str]:
    """Problems of one split: unpaired files, unreadable or size-mismatched files, label values out of range.

    ``images`` / ``labels`` map a shared key (the stem, or the Cityscapes frame id) to the file. Sizes are read from
    the headers of every pair; label values are decoded for the first ``samples`` pairs only.
    """
    from diffact.data.images import image_size

    problems = []
    no_label = set(images) - set(labels)
    if no_label:
        problems.append(f"{where_labels}: {len(no_label)} image(s) of {where_images} have no label map "
                        f"*{label_suffix}, e.g. {_examples(no_label)}")
    no_image = set(labels) - set(images)
    if no_image:
        problems.append(f"{where_images}: {len(no_image)} label map(s) of {where_labels} have no image, "
                        f"e.g. {_examples(no_image)}")
    bad_size = []
    for index, key in enumerate(sorted(set(images) & set(labels))):
        try:
            size = image_size(images[key])
        except DataError as err:
            problems.append(str(err))
            continue
        try:
            label_size = image_size(labels[key])
            if index < samples:
                values = _read_label(labels[key])
                top = int(values.max()) if values.size else 0
                if top > max_label and top != IGNORE_INDEX:
                    problems.append(f"{labels[key]}: label value {top} above {max_label} (the largest class id)")
        except DataError as err:
            problems.append(str(err))
            continue
        if size != label_size:
            bad_size.append(f"{labels[key].name} ({label_size[0]}×{label_size[1]} vs image {size[0]}×{size[1]})")
    if bad_size:
        problems.append(f"{where_labels}: {len(bad_size)} label map(s) differ in size from their image, "
                        f"e.g. {_examples(bad_size)}")
    return problems


def check_ade20k(root: str | Path, official_counts: bool = True) -> list[str]:
    """Every problem of an ADE20K-layout root, as messages naming the file or folder; empty = ready to train.

    Checks the four folders, image ↔ annotation pairing, header sizes, label values (0..num_classes) of a sample,
    and the image counts: the official release's for a real root (unless ``official_counts`` is False: a fixture
    tree in the real layout), the ``dataset.json`` counts for a demo root.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: ADE20K root does not exist "
                "(expected images/ and annotations/ with training/ and validation/)"]
    try:
        meta = read_meta(root)
    except DataError as err:
        return [str(err)]
    expected = ({"training": meta.get("train_count"), "validation": meta.get("val_count")} if meta
                else OFFICIAL_COUNTS if official_counts else {})
    classes = int(meta["num_classes"]) if meta else NUM_CLASSES
    problems = []
    for split in SPLITS:
        images_dir, labels_dir = root / "images" / split, root / "annotations" / split
        missing = [str(d) for d in (images_dir, labels_dir) if not d.is_dir()]
        if missing:
            problems += [f"{d}: missing folder (ADE20K layout)" for d in missing]
            continue
        images, labels = _stems(images_dir, IMAGE_SUFFIX), _stems(labels_dir, LABEL_SUFFIX)
        if not images:
            problems.append(f"{images_dir}: no *{IMAGE_SUFFIX} images")
            continue
        want = expected.get(split)
        if want is not None and len(images) != int(want):
            source = f"{root / DATASET_JSON}" if meta else "the official ADEChallengeData2016 release"
            problems.append(f"{images_dir}: {len(images)} images, expected {want} ({source})")
        # Raw annotation values: 0 = other, 1..classes (reduce_zero_label happens at load time).
        problems += check_pairs(images, labels, images_dir, labels_dir, LABEL_SUFFIX, max_label=classes)
    return problems
