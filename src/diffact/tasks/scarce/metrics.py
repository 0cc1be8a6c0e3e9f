"""mIoU of the label-scarce protocol, accumulated over the whole test set (paper §2.10, §4).

We follow DDPM-seg's ``compute_iou`` (src/pixel_classifier.py; copied unchanged into the paper's
``scarce_segmentation/segmentation/pixel_classifier.py``):

* intersections and unions are summed over all test images first, then IoU is taken per class
  (not averaged per image);
* the class list is ``range(K)`` minus the ignore label (255 lies outside the range, so all K classes count);
* IoU_c = I_c / (1e-8 + U_c) with U_c = |pred == c  OR  gt == c|. Pixels whose ground truth is the ignore
  label therefore still add to U_c when they are *predicted* as c ("ignored pixels are false positives");
* a class absent from both ground truth and prediction over the whole test set gets IoU 0/(1e-8) = 0 and
  still enters the mean (``absent="zero"``).

Both quirks can be switched off (``ignored_pixels="drop"``, ``absent="skip"``, the mmseg convention); the defaults
reproduce the published numbers' code path. On the real test sets they rarely matter: DDPM-seg does not mark small
regions as ignore at test time, and every class of Horse-21/Bedroom-28 usually occurs in a 20-image test split.

The confusion matrix has K+1 rows: row K collects pixels whose ground truth is the ignore label.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
ABSENT_RULES = ("zero", "skip")
IGNORED_PIXEL_RULES = ("false-positive", "drop")


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int = IGNORE) -> np.ndarray:
    """(K+1)×K counts: rows = ground truth (row K = ignored pixels), columns = prediction.

    ``ignore_label`` may also be a real class id < K (DDPM-seg's own Bedroom config ignores class 0); its pixels
    then go to row K as well. Predictions must be in [0, K).
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    gt = np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has {pred.size} pixels, ground truth {gt.size}")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes}), got {pred.min()}..{pred.max()}")
    rows = np.where((gt == ignore_label) | (gt < 0) | (gt >= num_classes), num_classes, gt)
    counts = np.bincount(rows * num_classes + pred, minlength=(num_classes + 1) * num_classes)
    return counts.reshape(num_classes + 1, num_classes)


def class_ious(conf: np.ndarray, ignore_label: int = IGNORE, ignored_pixels: str = "false-positive",
               absent: str = "zero") -> np.ndarray:
    """Per-class IoU from a (K+1)×K confusion matrix; NaN marks classes left out of the mean.

    Left out: the ignore label when it is a class id < K, and (with ``absent="skip"``) classes with no
    ground-truth and no predicted pixel.
    """
    if ignored_pixels not in IGNORED_PIXEL_RULES:
        raise ValueError(f"ignored_pixels must be one of {IGNORED_PIXEL_RULES}, got {ignored_pixels!r}")
    if absent not in ABSENT_RULES:
        raise ValueError(f"absent must be one of {ABSENT_RULES}, got {absent!r}")
    conf = np.asarray(conf, dtype=np.float64)
    k = conf.shape[1]
    inter = np.diag(conf[:k])
    gt_total = conf[:k].sum(axis=1)
    pred_total = conf.sum(axis=0) if ignored_pixels == "false-positive" else conf[:k].sum(axis=0)
    union = gt_total + pred_total - inter
    ious = inter / (1e-8 + union)  # DDPM-seg's epsilon: absent classes come out as 0, not NaN
    if absent == "skip":
        ious[union == 0] = np.nan
    if 0 <= ignore_label < k:
        ious[ignore_label] = np.nan
    return ious


def mean_iou(conf: np.ndarray, ignore_label: int = IGNORE, ignored_pixels: str = "false-positive",
             absent: str = "zero") -> float:
    """mIoU in percent (the paper's unit), averaged over the classes :func:`class_ious` keeps."""
    ious = class_ious(conf, ignore_label, ignored_pixels, absent)
    kept = ious[~np.isnan(ious)]
    return float(kept.mean() * 100) if kept.size else float("nan")


def mean_and_std(values, ddof: int = 1) -> tuple[float, float]:
    """Mean ± standard deviation over random splits (paper Table 2 "mean ± std over 5 splits").

    The paper does not say which std; we use the sample std (``ddof=1``, pandas' default). One value → std 0.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    std = float(arr.std(ddof=ddof)) if arr.size > ddof else 0.0
    return float(arr.mean()), std
