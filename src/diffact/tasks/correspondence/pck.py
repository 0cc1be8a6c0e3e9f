"""PCK (percentage of correct keypoints) for semantic correspondence (paper §2.8, spec §4).

A predicted target keypoint is correct when its distance to the ground truth is at most a threshold
(``<=``, as DHF's ``compute_pck``):

* **img**:  α · max(W, H) of the target image (original pixels);
* **bbox**: α · max(x2 − x1, y2 − y1) of the target's bounding box.

The paper reports α = 0.1 for both, **pooled over all keypoints** of the evaluation set (not averaged
per pair or per category); per-category values and α ∈ {0.05, 0.15} are reported here as well.
Ground-truth keypoints that are missing (NaN or negative) are left out of the denominator.
PCK values are percentages (0–100), as in the paper's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from diffact.data.spair import keypoints_present
from diffact.utils.errors import ConfigError, DataError

ALPHAS: tuple[float, ...] = (0.05, 0.10, 0.15)
PAPER_ALPHA = 0.10
KINDS: tuple[str, ...] = ("img", "bbox")
ALL = "all"  # the category label of pooled rows


def img_threshold(alpha: float, image_size: Sequence[int]) -> float:
    """α · max(W, H) of the (original) target image; ``image_size`` is (W, H) or SPair's (W, H, C)."""
    return float(alpha) * float(max(image_size[0], image_size[1]))


def bbox_threshold(alpha: float, bbox: Sequence[float]) -> float:
    """α · max(x2 − x1, y2 − y1) of the target bounding box [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return float(alpha) * max(x2 - x1, y2 - y1)


def keypoint_distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distances (N,) between (N, 2) predictions and ground truth (NaN where either is missing)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    if pred.shape != gt.shape:
        raise DataError(f"predicted and ground-truth keypoints differ in shape: {pred.shape} vs {gt.shape}")
    distances = np.linalg.norm(pred - gt, axis=1)
    distances[~keypoints_present(gt)] = np.nan
    return distances


def pck_hits(pred: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean (N,): prediction within ``threshold`` pixels of the ground truth. False for missing ground
    truth (exclude those with :func:`diffact.data.spair.keypoints_present`) and for NaN predictions."""
    with np.errstate(invalid="ignore"):
        return keypoint_distances(pred, gt) <= float(threshold)


def pck(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    """PCK in percent over the annotated ground-truth keypoints (NaN if there are none)."""
    valid = keypoints_present(gt)
    if not valid.any():
        return float("nan")
    return 100.0 * float(pck_hits(pred, gt, threshold)[valid].mean())


def _alpha_key(alpha: float) -> float:
    # 0.1 and 0.10000000000000001 must be the same key.
    return round(float(alpha), 6)


@dataclass
class _Count:
    correct: int = 0
    total: int = 0

    def pck(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")


@dataclass
class PCKAccumulator:
    """Collects per-pair hits and reports PCK pooled over keypoints and per category.

    Use :meth:`add_pair` with predictions (it computes img and bbox hits at every α), or :meth:`add_hits`
    with hits computed elsewhere. Results: :meth:`pooled`, :meth:`per_category`, :meth:`category_mean`,
    :meth:`table` (pandas), :meth:`summary` (flat dict) and :meth:`pairs_table` (one row per pair).
    """

    alphas: Sequence[float] = ALPHAS
    _counts: dict = field(default_factory=dict, repr=False)
    _pairs: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.alphas or any(not 0 < float(a) for a in self.alphas):
            raise ConfigError(f"PCK alphas must be positive numbers, got {list(self.alphas)}")
        self.alphas = tuple(_alpha_key(a) for a in self.alphas)

    def add_hits(self, category: str, hits: Mapping[tuple[str, float], np.ndarray], valid: np.ndarray | None = None, name: str = "") -> None:
        """Add one pair. ``hits`` maps (kind, α) → boolean (N,) (kind "img" or "bbox", every α of this
        accumulator); ``valid`` (N,) marks the keypoints that count (default: all)."""
        normalised = {(kind, _alpha_key(alpha)): np.asarray(h, dtype=bool).reshape(-1) for (kind, alpha), h in hits.items()}
        missing = [(k, a) for k in KINDS for a in self.alphas if (k, a) not in normalised]
        if missing:
            raise DataError(f"pair {name or '?'}: hits lack {missing}")
        lengths = {len(h) for h in normalised.values()}
        if len(lengths) != 1:
            raise DataError(f"pair {name or '?'}: hit arrays differ in length: {sorted(lengths)}")
        n = lengths.pop()
        valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
        if len(valid) != n:
            raise DataError(f"pair {name or '?'}: valid mask has {len(valid)} entries for {n} keypoints")
        row = {"pair": name, "category": category, "n_keypoints": int(valid.sum())}
        for kind in KINDS:
            for alpha in self.alphas:
                correct = int(normalised[(kind, alpha)][valid].sum())
                for key in ((kind, alpha, ALL), (kind, alpha, category)):
                    count = self._counts.setdefault(key, _Count())
                    count.correct += correct
                    count.total += int(valid.sum())
                row[f"correct_{kind}@{alpha:.2f}"] = correct
        self._pairs.append(row)

    def add_pair(
        self,
        category: str,
        pred_kps: np.ndarray,
        trg_kps: np.ndarray,
        trg_size: Sequence[int],
        trg_bbox: Sequence[float],
        *,
        src_kps: np.ndarray | None = None,
        name: str = "",
    ) -> dict[tuple[str, float], np.ndarray]:
        """Score one pair's (N, 2) predictions against its (N, 2) target keypoints and add it.

        A keypoint counts when the target keypoint is annotated (and, if ``src_kps`` is given, the source
        one too); NaN predictions count as misses. Returns the hits as {(kind, α): bool (N,)}.
        """
        valid = keypoints_present(trg_kps)
        if src_kps is not None:
            valid &= keypoints_present(src_kps)
        hits = {}
        for alpha in self.alphas:
            hits[("img", alpha)] = pck_hits(pred_kps, trg_kps, img_threshold(alpha, trg_size))
            hits[("bbox", alpha)] = pck_hits(pred_kps, trg_kps, bbox_threshold(alpha, trg_bbox))
        self.add_hits(category, hits, valid, name=name)
        return hits

    def add_spair_pair(self, pair, pred_kps: np.ndarray) -> dict[tuple[str, float], np.ndarray]:
        """:meth:`add_pair` for a :class:`diffact.data.spair.SPairPair`."""
        return self.add_pair(pair.category, pred_kps, pair.trg_kps, pair.trg_size, pair.trg_bbox, src_kps=pair.src_kps, name=pair.name)

    # ------------------------------------------------------------------------------------------

    @property
    def categories(self) -> list[str]:
        return sorted({c for (_, _, c) in self._counts if c != ALL})

    @property
    def n_pairs(self) -> int:
        return len(self._pairs)

    @property
    def n_keypoints(self) -> int:
        return self._counts.get((KINDS[0], self.alphas[0], ALL), _Count()).total

    def _count(self, kind: str, alpha: float, category: str) -> _Count:
        if kind not in KINDS:
            raise ConfigError(f"unknown PCK kind {kind!r}; expected one of {KINDS}")
        if _alpha_key(alpha) not in self.alphas:
            raise ConfigError(f"alpha {alpha} was not accumulated; have {list(self.alphas)}")
        return self._counts.get((kind, _alpha_key(alpha), category), _Count())

    def pooled(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> float:
        """PCK (%) pooled over all keypoints — the paper's number (NaN before any keypoint)."""
        return self._count(kind, alpha, ALL).pck()

    def per_category(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> dict[str, float]:
        """PCK (%) pooled over the keypoints of each category."""
        return {c: self._count(kind, alpha, c).pck() for c in self.categories}

    def category_mean(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> float:
        """Unweighted mean of the per-category PCKs (some papers report this instead of pooling)."""
        values = list(self.per_category(kind, alpha).values())
        return float(np.mean(values)) if values else float("nan")

    def table(self):
        """pandas DataFrame, one row per (category, kind, α): columns category ("all" = pooled, first),
        kind, alpha, n_correct, n_keypoints, pck (%)."""
        import pandas as pd

        rows = []
        for category in [ALL, *self.categories]:
            for kind in KINDS:
                for alpha in self.alphas:
                    count = self._count(kind, alpha, category)
                    rows.append(
                        {"category": category, "kind": kind, "alpha": alpha, "n_correct": count.correct, "n_keypoints": count.total, "pck": count.pck()}
                    )
        return pd.DataFrame(rows, columns=["category", "kind", "alpha", "n_correct", "n_keypoints", "pck"])

    def summary(self) -> dict[str, float]:
        """Flat dict of pooled results: ``pck_img@0.10`` etc. (%), plus n_pairs and n_keypoints."""
        out: dict[str, float] = {"n_pairs": self.n_pairs, "n_keypoints": self.n_keypoints}
        for kind in KINDS:
            for alpha in self.alphas:
                out[f"pck_{kind}@{alpha:.2f}"] = self.pooled(kind, alpha)
        return out

    def pairs_table(self):
        """pandas DataFrame with one row per added pair: pair, category, n_keypoints, correct_<kind>@<α>."""
        import pandas as pd

        return pd.DataFrame(self._pairs)
