"""The constant-class baseline of Table 2 (left): the most frequent training class predicted at every pixel.

A trained segmentor that does not beat it has learnt nothing beyond the class prior. It is scored exactly as the
segmentor is (mmseg's ``IoUMetric`` arithmetic: IoU accumulated over the validation set per class, a class absent
from both ground truth and prediction left out of the mean) on the validation labels at their original size, after
the dataset's own label reading (ADE20K: ``reduce_zero_label``; Cityscapes: train ids).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffact.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LAYOUTS = ("ade20k", "cityscapes")
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Layout:
    """How to list and read one dataset layout."""

    pairs: object  # (root, split) -> list[SegPair]
    load_label: object  # path -> H×W uint8, 255 = ignored
    num_classes: int
    class_names: list[str]
    train_split: str
    val_split: str


def open_layout(layout: str, root: str | Path) -> Layout:
    if layout == "ade20k":
        from diffact.data import ade20k

        return Layout(ade20k.ade20k_pairs, ade20k.load_ade20k_label, ade20k.num_classes(root), ade20k.class_names(root),
                      "training", "validation")
    if layout == "cityscapes":
        from mmseg.datasets import CityscapesDataset

        from diffact.data import cityscapes

        return Layout(cityscapes.cityscapes_pairs, cityscapes.load_cityscapes_label, cityscapes.NUM_CLASSES,
                      list(CityscapesDataset.METAINFO["classes"]), "train", "val")
    raise ConfigError(f"unknown segmentation layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def class_histogram(layout: Layout, root: str | Path, split: str) -> np.ndarray:
    """Pixels per class over a split (ignored pixels and out-of-range values not counted)."""
    counts = np.zeros(layout.num_classes, dtype=np.int64)
    for pair in layout.pairs(root, split):
        label = layout.load_label(pair.label)
        counts += np.bincount(label.ravel(), minlength=256)[: layout.num_classes]
    return counts


def constant_prediction_metrics(layout: Layout, root: str | Path, klass: int) -> dict:
    """mIoU / mAcc / aAcc (in %) and per-class IoU of predicting ``klass`` everywhere on the validation split."""
    import torch
    from mmseg.evaluation import IoUMetric

    totals = None
    pairs = layout.pairs(root, layout.val_split)
    for pair in pairs:
        label = torch.from_numpy(layout.load_label(pair.label).astype(np.int64))
        pred = torch.full_like(label, klass)
        areas = IoUMetric.intersect_and_union(pred, label, layout.num_classes, IGNORE_INDEX)
        totals = list(areas) if totals is None else [t + a for t, a in zip(totals, areas)]
    metrics = IoUMetric.total_area_to_metrics(*totals, ["mIoU"])
    result = {"miou": float(np.nanmean(metrics["IoU"]) * 100), "macc": float(np.nanmean(metrics["Acc"]) * 100),
              "aacc": float(metrics["aAcc"] * 100), "n_val": len(pairs)}
    for name, iou in zip(layout.class_names, metrics["IoU"]):
        result[f"iou.{name}"] = float(iou * 100)
    return result


def constant_baseline(layout_name: str, root: str | Path) -> dict:
    """The baseline row: the most frequent training class and its validation scores."""
    layout = open_layout(layout_name, root)
    counts = class_histogram(layout, root, layout.train_split)
    if counts.sum() == 0:
        raise DataError(f"{root}: the training labels hold no pixel of any class")
    klass = int(np.argmax(counts))
    log.info("constant baseline on %s: class %d (%s), %.1f%% of the labelled training pixels", root, klass,
             layout.class_names[klass], 100 * counts[klass] / counts.sum())
    return {"method": "constant class", "class_index": klass, "class_name": layout.class_names[klass],
            "train_share": float(counts[klass] / counts.sum()), **constant_prediction_metrics(layout, root, klass)}
