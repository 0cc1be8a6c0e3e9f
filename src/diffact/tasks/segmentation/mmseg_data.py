"""mmseg registry entries for data and evaluation (imported by the configs' ``custom_imports``).

* ``DemoADE20KDataset``: the demo set of :mod:`diffact.data.demo_ade` — mmseg's ADE20K reading (``.jpg`` images,
  ``.png`` annotations, ``reduce_zero_label=True``) with the demo's 6 classes. The real datasets use mmseg's own
  ``ADE20KDataset`` and ``CityscapesDataset`` unchanged.
* ``PerClassIoUMetric``: mmseg's ``IoUMetric`` (same accumulation, same aAcc / mIoU / mAcc) that also returns the
  per-class IoU and accuracy as ``IoU.<class>`` / ``Acc.<class>`` (in %, NaN for a class absent from both the
  ground truth and the prediction), so the results CSV can hold them.
"""

from __future__ import annotations

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, METRICS

from diffact.data.demo_ade import CLASSES

# Distinct colours for the demo classes (visualisation only).
DEMO_PALETTE = [[120, 120, 120], [80, 50, 50], [230, 230, 230], [204, 5, 255], [255, 6, 51], [11, 102, 255]]


@DATASETS.register_module()
class DemoADE20KDataset(BaseSegDataset):
    METAINFO = dict(classes=CLASSES, palette=DEMO_PALETTE[: len(CLASSES)])

    def __init__(self, img_suffix: str = ".jpg", seg_map_suffix: str = ".png", reduce_zero_label: bool = True,
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    def compute_metrics(self, results: list) -> dict:
        metrics = super().compute_metrics(results)
        if self.format_only or not results:
            return metrics
        totals = [sum(column) for column in zip(*results)]
        per_class = self.total_area_to_metrics(*totals, ["mIoU"], self.nan_to_num, self.beta)
        for name, iou, acc in zip(self.dataset_meta["classes"], per_class["IoU"], per_class["Acc"]):
            metrics[f"IoU.{name}"] = float(np.round(float(iou) * 100, 2))
            metrics[f"Acc.{name}"] = float(np.round(float(acc) * 100, 2))
        return metrics
