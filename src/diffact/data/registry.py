"""Which images a dataset holds, as (image id, path) pairs: the extraction's input list.

Image ids name the feature-store shards: ``<category>/<stem>`` for SPair-71k, ``<split>/<stem>`` for the
DDPM-seg layout, ``<stem>`` for a plain folder, ``<split>/<stem>`` (ADE20K) and ``<split>/<city>/<frame>``
(Cityscapes) for the mmseg segmentation layouts.
"""

from __future__ import annotations

from pathlib import Path

from diffact.utils.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
KINDS = ("spair", "ddpmseg", "folder", "ade20k", "cityscapes")


def spair_image_id(category: str, path: str | Path) -> str:
    """Feature-store id of an SPair image: ``<category>/<stem>``."""
    return f"{category}/{Path(path).stem}"


def spair_images(root: str | Path, split: str = "test", subset: str | None = None,
                 **subset_policy) -> list[tuple[str, Path]]:
    """``subset_policy``: :class:`diffact.data.spair.SPairDataset`'s ``subset_fallback`` / ``official_counts``."""
    from diffact.data.spair import SPairDataset

    images: dict[str, Path] = {}
    for pair in SPairDataset(root, split=split, subset=subset, **subset_policy):
        for path in (pair.src_path, pair.trg_path):
            images[spair_image_id(pair.category, path)] = path
    return sorted(images.items())


def ddpmseg_images(root: str | Path, split: str | None = None) -> list[tuple[str, Path]]:
    from diffact.data.ddpmseg import open_ddpmseg

    dataset = open_ddpmseg(root)
    return sorted((item.id, item.image_path) for item in dataset.images(None if split in (None, "all") else split))


def folder_images(root: str | Path) -> list[tuple[str, Path]]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    return sorted((p.stem, p) for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def segmentation_images(kind: str, root: str | Path, split: str | None = None) -> list[tuple[str, Path]]:
    """ADE20K / Cityscapes (mmseg layouts): ids ``<split>/<stem>`` / ``<split>/<city>/<frame>``; no split = both."""
    from diffact.data import ade20k, cityscapes

    module, pairs = (ade20k, ade20k.ade20k_pairs) if kind == "ade20k" else (cityscapes, cityscapes.cityscapes_pairs)
    splits = [split] if split not in (None, "all") else list(module.SPLITS)
    return sorted((pair.id, pair.image) for s in splits for pair in pairs(root, s))


def dataset_images(kind: str, root: str | Path, split: str | None = None, subset: str | None = None,
                   **subset_policy) -> list[tuple[str, Path]]:
    """All images of a dataset split, sorted by id; an empty dataset is an error. ``subset_policy`` (SPair
    only): ``subset_fallback`` / ``official_counts`` of :class:`diffact.data.spair.SPairDataset`."""
    if kind == "spair":
        images = spair_images(root, split or "test", subset, **subset_policy)
    elif kind == "ddpmseg":
        images = ddpmseg_images(root, split)
    elif kind == "folder":
        images = folder_images(root)
    elif kind in ("ade20k", "cityscapes"):
        images = segmentation_images(kind, root, split)
    else:
        raise ConfigError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not images:
        what = f"split {split!r} of this {kind} dataset" if split else f"this {kind} dataset"
        hint = f" (image files end in {', '.join(IMAGE_SUFFIXES)})" if kind == "folder" else ""
        raise DataError(f"{root}: {what} has no images{hint}")
    return images
