"""PCK (percentage of correct keypoints) for semantic correspondence (paper §2.8, docs/paper.md §4).

A predicted target keypoint is correct when its distance to the ground truth is at most a threshold
(``<=``, as DHF's ``compute_pck``):

* **img**:  α · max(W, H) of the target image (original pixels);
* **bbox**: α · max(x2 − x1, y2 − y1) of the target's bounding box.

The paper reports α = 0.1 for both, **pooled over all keypoints** of the evaluation set (not averaged
per pair or per category; DHF's ``compute_pck`` concatenates every pair's distances); per-category values and
α ∈ {0.05, 0.15} are reported here as well. Beside every pooled value stands the **per-image** PCK of
DIFT (Tang et al. 2023) and GeoAware-SC (Zhang et al. 2024): each pair's PCK over its own keypoints, then the
mean over pairs (columns ``<metric>_per_image``), so numbers from either convention can be compared. Pairs
differ in keypoint count, so the two differ whenever pairs with many keypoints score differently from pairs
with few. Ground-truth keypoints that are missing (NaN or negative) are left out of the denominator; a pair
with none counts in neither. PCK values are percentages (0–100), as in the paper's tables.
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
PER_IMAGE = "_per_image"  # suffix of the per-image columns: pck_img@0.10 → pck_img@0.10_per_image


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


def metric_column(kind: str, alpha: float) -> str:
    """The pooled PCK column of a result table, e.g. ``pck_img@0.10``; its per-image twin adds ``_per_image``."""
    return f"pck_{kind}@{float(alpha):.2f}"


def _alpha_key(alpha: float) -> float:
    # 0.1 and 0.10000000000000001 must be the same key.
    return round(float(alpha), 6)


@dataclass
class _Count:
    """Hits over keypoints (pooled PCK) and the sum of the pairs' own PCKs (per-image PCK)."""

    correct: int = 0
    total: int = 0
    pair_pck_sum: float = 0.0
    pairs: int = 0  # pairs with at least one annotated keypoint

    def add(self, correct: int, total: int) -> None:
        self.correct += correct
        self.total += total
        if total:
            self.pair_pck_sum += 100.0 * correct / total
            self.pairs += 1

    def pck(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")

    def pck_per_image(self) -> float:
        return self.pair_pck_sum / self.pairs if self.pairs else float("nan")


@dataclass
class PCKAccumulator:
    """Collects per-pair hits and reports PCK pooled over keypoints (the paper's) and per image (the mean
    of the pairs' own PCKs, DIFT/GeoAware's), overall and per category.

    Use :meth:`add_pair` with predictions (it computes img and bbox hits at every α), or :meth:`add_hits`
    with hits computed elsewhere. Results: :meth:`pooled`, :meth:`per_image`, :meth:`per_category`,
    :meth:`category_mean`, :meth:`table` (pandas), :meth:`summary` (flat dict) and :meth:`pairs_table`
    (one row per pair).
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
                    self._counts.setdefault(key, _Count()).add(correct, int(valid.sum()))
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

    def per_image(self, kind: str = "img", alpha: float = PAPER_ALPHA, category: str = ALL) -> float:
        """Per-image PCK (%): the mean over pairs (of ``category``, default all) of each pair's PCK over its
        annotated keypoints — DIFT's and GeoAware-SC's convention (NaN before any keypoint)."""
        return self._count(kind, alpha, category).pck_per_image()

    def per_category(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> dict[str, float]:
        """PCK (%) pooled over the keypoints of each category."""
        return {c: self._count(kind, alpha, c).pck() for c in self.categories}

    def per_category_per_image(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> dict[str, float]:
        """Per-image PCK (%) of each category: the mean of its pairs' own PCKs."""
        return {c: self.per_image(kind, alpha, c) for c in self.categories}

    def category_mean(self, kind: str = "img", alpha: float = PAPER_ALPHA) -> float:
        """Unweighted mean of the per-category PCKs (some papers report this instead of pooling)."""
        values = list(self.per_category(kind, alpha).values())
        return float(np.mean(values)) if values else float("nan")

    TABLE_COLUMNS = ("category", "kind", "alpha", "n_correct", "n_keypoints", "pck", "n_pairs", "pck" + PER_IMAGE)

    def table(self):
        """pandas DataFrame, one row per (category, kind, α): columns category ("all" = every pair, first),
        kind, alpha, n_correct, n_keypoints, pck (% pooled over keypoints), n_pairs (pairs with a keypoint)
        and pck_per_image (% mean of the pairs' PCKs)."""
        import pandas as pd

        rows = []
        for category in [ALL, *self.categories]:
            for kind in KINDS:
                for alpha in self.alphas:
                    count = self._count(kind, alpha, category)
                    rows.append(dict(zip(self.TABLE_COLUMNS, (category, kind, alpha, count.correct, count.total,
                                                              count.pck(), count.pairs, count.pck_per_image()))))
        return pd.DataFrame(rows, columns=list(self.TABLE_COLUMNS))

    def summary(self) -> dict[str, float]:
        """Flat dict of the results over all pairs: ``pck_img@0.10`` etc. (% pooled over keypoints), each
        followed by ``pck_img@0.10_per_image`` (% mean over pairs), plus n_pairs and n_keypoints."""
        out: dict[str, float] = {"n_pairs": self.n_pairs, "n_keypoints": self.n_keypoints}
        for kind in KINDS:
            for alpha in self.alphas:
                column = metric_column(kind, alpha)
                out[column] = self.pooled(kind, alpha)
                out[column + PER_IMAGE] = self.per_image(kind, alpha)
        return out

    def pairs_table(self):
        """pandas DataFrame with one row per added pair: pair, category, n_keypoints, correct_<kind>@<α>."""
        import pandas as pd

        return pd.DataFrame(self._pairs)
