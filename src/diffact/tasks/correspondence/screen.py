"""Per-activation nearest-neighbour PCK screening from one feature store (paper §4, Fig. 4; §2.8 protocol),
plus the raw-pixel reference computed the same way.

Each activation is scored alone: for every pair, its source and target maps are read lazily from the
store (one layer of two images at a time), matched by hard NN on cosine similarity and scored with PCK
(image and bbox thresholds, pooled over keypoints, and per image beside it). Memory: two feature maps and
one band of the upsampled target at a time. Every row also reports the evaluation speed (``seconds``, ``keypoints_per_s``:
annotated keypoints scored per second, store reads included), so the cost of an eval size can be judged;
those wall-clock columns go to the log, not into result files (:func:`without_timings`), so the same
config always writes the same bytes.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from diffact.data.images import load_image_tensor
from diffact.data.registry import spair_image_id
from diffact.extract.store import FeatureStore
from diffact.tasks.correspondence.matching import transfer_pair
from diffact.tasks.correspondence.pck import PCKAccumulator

log = logging.getLogger(__name__)

ALPHAS = (0.05, 0.10, 0.15)
# Wall-clock measurements: they differ from run to run (machine load), so result files leave them out.
TIMING_COLUMNS = ("seconds", "keypoints_per_s", "elapsed_s")


def without_timings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the wall-clock columns: what is written to result files, which must be identical
    for identical inputs (kill-and-resume, reruns; see docs/determinism.md)."""
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


def _summary_row(acc: PCKAccumulator, seconds: float | None = None) -> dict:
    """n_pairs, n_keypoints and every PCK column: pooled (``pck_img@0.10``, the paper's) with its per-image
    twin beside it (``pck_img@0.10_per_image``, DIFT/GeoAware's mean over pairs)."""
    row = acc.summary()
    if seconds is not None:
        row["seconds"] = seconds
        row["keypoints_per_s"] = acc.n_keypoints / seconds if seconds > 0 else float("nan")
    return row


def timed_score(pairs: Sequence, features_of, eval_size: int, alphas: Sequence[float] = ALPHAS,
                resize=None) -> tuple[PCKAccumulator, float]:
    """:func:`score_features` and the wall-clock seconds it took."""
    start = time.perf_counter()
    acc = score_features(pairs, features_of, eval_size, alphas, resize)
    return acc, time.perf_counter() - start


def score_features(pairs: Sequence, features_of, eval_size: int, alphas: Sequence[float] = ALPHAS,
                   resize=None) -> PCKAccumulator:
    """PCK of one feature source. ``features_of(pair)`` returns (src C×h×w, trg C×h×w); ``resize``: how the
    images were placed on the model input (a store's ``resize``; None: the paper's square stretch)."""
    acc = PCKAccumulator(alphas=tuple(alphas))
    for pair in pairs:
        src, trg = features_of(pair)
        acc.add_spair_pair(pair, transfer_pair(pair, src, trg, eval_size=eval_size, resize=resize))
    return acc


def screen_store(store: FeatureStore, pairs: Sequence, layers: Iterable[str] | None = None, eval_size: int = 64,
                 alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """One row per activation: its kind, channels, spatial size and PCK@α (img, bbox), in forward order."""
    rows = []
    names = list(layers) if layers is not None else store.layers
    for index, name in enumerate(tqdm(names, desc=f"NN PCK {store.root.name}", unit="layer")):
        def features_of(pair, name=name):
            src = store.read_layer(spair_image_id(pair.category, pair.src_path), name)
            trg = store.read_layer(spair_image_id(pair.category, pair.trg_path), name)
            return src, trg

        acc, seconds = timed_score(pairs, features_of, eval_size, alphas, store.resize)
        channels, height, width = store.shape(name)
        rows.append({"forward_index": index, "layer": name, "kind": kind_of(name), "channels": channels,
                     "height": height, "width": width, **_summary_row(acc, seconds)})
        log.debug("%s: PCK@0.1 img %.2f, %.0f keypoints/s", name, acc.pooled("img", 0.1), rows[-1]["keypoints_per_s"])
    table = pd.DataFrame(rows)
    if len(table):
        total = table["seconds"].sum()
        log.info("NN PCK of %d activations of %s at eval size %d: %d keypoints each, %.0f keypoints/s overall",
                 len(table), store.root.name, eval_size, int(table["n_keypoints"].iloc[0]),
                 table["n_keypoints"].sum() / total if total > 0 else float("nan"))
    return table


def kind_of(name: str) -> str:
    """The activation kind from a paper-style name (``...-vit-block0-cross-q`` → ``cross-q``)."""
    for suffix in ("res-increment", "res-out", "vit-out", "downsampler-out", "upsampler-out", "self-map", "cross-map",
                   "self-q", "self-k", "self-v", "cross-q", "ffn-inner"):
        if name.endswith(suffix):
            return suffix
    if "-vit-block" in name and name.endswith("-out"):
        return "block-out"
    return name.split("-", 1)[-1]


def pixel_patch_features(image: torch.Tensor, patch: int = 5) -> torch.Tensor:
    """Raw-pixel reference descriptor: each pixel's ``patch``×``patch`` colour neighbourhood (3·patch² channels),
    mean-subtracted and L2-normalised per pixel (so matching is invariant to brightness offsets and contrast).

    ``image``: 3×S×S in [-1, 1] → 3·patch²×S×S.
    """
    padded = F.pad(image[None], (patch // 2,) * 4, mode="reflect")
    cols = F.unfold(padded, patch)  # 1×(3·p²)×(S·S)
    cols = cols - cols.mean(dim=1, keepdim=True)
    cols = cols / cols.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return cols.reshape(1, -1, *image.shape[-2:])[0]


def screen_pixels(pairs: Sequence, image_size: int, eval_size: int, patch: int = 5,
                  alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """The raw-pixel reference row, scored exactly like an activation."""
    def features_of(pair):
        return tuple(pixel_patch_features(load_image_tensor(p, image_size)[0], patch) for p in (pair.src_path, pair.trg_path))

    acc, seconds = timed_score(pairs, features_of, eval_size, alphas)
    log.info("raw-pixel reference: %.0f keypoints/s", acc.n_keypoints / seconds if seconds > 0 else float("nan"))
    return pd.DataFrame([{"forward_index": -1, "layer": f"pixels-{patch}x{patch}", "kind": "pixels",
                          "channels": 3 * patch * patch, "height": image_size, "width": image_size,
                          **_summary_row(acc, seconds)}])

