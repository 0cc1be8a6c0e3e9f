"""PCA → RGB visualisation of an activation (the paper's ``feature_visualization.py`` recipe, docs/paper.md §6):
reshape C×H×W to (H·W)×C, project on the first 3 principal components, min-max each component to [0, 1],
show as RGB, nearest-upsampled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where a projection runs: the notebooks only up-sample stored maps (nearest_resize)
    import torch


def pca_project(feature: torch.Tensor, components: int = 3) -> np.ndarray:
    """C×H×W → H×W×k scores on the top-k principal components (centred; SVD, deterministic signs).

    Signs are fixed so that each component's largest-magnitude loading is positive, which keeps colours
    stable between runs.
    """
    import torch

    c, h, w = feature.shape
    x = feature.reshape(c, h * w).T.double()
    x = x - x.mean(dim=0, keepdim=True)
    k = min(components, c, h * w)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    basis = vh[:k]
    signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
    scores = x @ (basis * signs).T
    if k < components:
        scores = torch.cat([scores, torch.zeros(h * w, components - k, dtype=scores.dtype)], dim=1)
    return scores.reshape(h, w, components).numpy()


def minmax(scores: np.ndarray) -> np.ndarray:
    """Per-channel min-max to [0, 1] (a constant channel maps to 0)."""
    low = scores.min(axis=(0, 1), keepdims=True)
    span = scores.max(axis=(0, 1), keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1), 0.0)


def pca_rgb(feature: torch.Tensor, size: int | None = None) -> np.ndarray:
    """C×H×W activation → H'×W'×3 float RGB in [0, 1] (nearest-upsampled to ``size`` if given)."""
    return nearest_resize(minmax(pca_project(feature, 3)), size)


def nearest_resize(image: np.ndarray, size: int | None) -> np.ndarray:
    """H×W(×k) map → size×size(×k), nearest neighbour (unchanged when ``size`` is None or its height already):
    the maps of one figure are drawn at the largest one's size."""
    if size is None or image.shape[0] == size:
        return image
    rows = (np.arange(size) * image.shape[0] // size)
    cols = (np.arange(size) * image.shape[1] // size)
    return image[rows][:, cols]
