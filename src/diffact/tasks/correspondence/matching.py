"""Keypoint transfer by nearest neighbours on feature maps (the paper's correspondence evaluation, docs/paper.md §2.8).

The paper's ``validate`` (from DHF): upsample source and target feature maps bilinearly to 512×512
(``F.interpolate(mode="bilinear")``, align_corners=False), L2-normalise the channels, and for each source
keypoint take the target pixel of maximal cosine similarity (hard nearest neighbour, **no** soft-argmax);
the prediction is rescaled to the target's original size. Keypoint ↔ eval-grid conventions follow DHF's
``rescale_points`` / ``points_to_idxs``: a keypoint (x, y) of a W×H image goes to eval pixel
``round(clip(x·S/W, 0, S−1))`` (NumPy's round-half-to-even) and a predicted eval pixel (col, row) goes
back to ``(col·W_trg/S, row·H_trg/S)``. Images are resized to a square (§2.1), so x and y scale separately.
Stores extracted with ``resize: aspect`` (not the paper's) place the image on a padded canvas; pass their
``resize`` policy (``FeatureStore.resize``) and keypoints go through the canvas placement instead
(``eval = canvas(x) · S / image_size``, and back).

Memory and time stay small for any eval size: the source is only evaluated at its keypoints, and the
upsampled target is never built. Bilinear upsampling (the same weights as ``F.interpolate``, as separable
matrices R, K) is linear, so a keypoint descriptor's dot product with every upsampled target pixel is the
upsampled map of its dot products with the native pixels, ``d·up(F) = R (d·F) Kᵀ``; and each upsampled
pixel mixes at most two neighbouring columns of the row-upsampled map, so its norm needs only each column's
squared norm and its dot product with the next column. One pair's NN search over a 1280×16² map at S = 512
then costs a few milliseconds instead of seconds (normalising the C×S×S map dominated before), with the same
similarities up to float rounding and the same exact ties where upsampling repeats edge rows. Similarities are
computed a band of target rows and a chunk of keypoints at a time.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from diffact.data.spair import keypoints_present
from diffact.tasks.correspondence.settings import PAPER_EVAL_SIZE  # noqa: F401 (docs/paper.md §2.8)
from diffact.utils.errors import ConfigError, DataError

DEFAULT_TEMPERATURE = 0.02  # soft-argmax only (not used by the paper); cosine similarities lie in [-1, 1]
DEFAULT_CHUNK_SIZE = 256  # keypoints per similarity block
DEFAULT_MAX_BAND_ELEMENTS = 2**25  # floats per band-sized tensor (see band_rows_for), 128 MiB in float32


def bilinear_matrix(out_size: int, in_size: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(out_size, in_size) matrix of 1-D bilinear weights equal to ``F.interpolate(mode="bilinear",
    align_corners=False)`` along one axis (source index (o + 0.5)·in/out − 0.5, clamped at 0)."""
    scale = in_size / out_size
    position = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    lower = position.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    weight_upper = (position - lower).clamp(0, 1)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, lower), 1 - weight_upper, accumulate=True)
    matrix.index_put_((rows, upper), weight_upper, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def _as_size(size: Sequence[int], what: str) -> tuple[int, int]:
    """(W, H) from a (W, H) or SPair-style (W, H, C) sequence."""
    try:
        width, height = int(size[0]), int(size[1])
    except (TypeError, IndexError, ValueError) as err:
        raise DataError(f"{what} must be (width, height), got {size!r}") from err
    if width <= 0 or height <= 0:
        raise DataError(f"{what} must be positive, got {size!r}")
    return width, height


def keypoints_to_eval_pixels(kps: np.ndarray, image_size: Sequence[int], eval_size: int, resize=None) -> np.ndarray:
    """(N, 2) keypoints (x, y) in a W×H image → (N, 2) int64 eval-grid pixels (col, row) on S×S (DHF rule:
    scale, clip to [0, S−1], round half to even). Missing keypoints give meaningless values; mask them.
    ``resize``: the store's :class:`~diffact.data.images.ResizePolicy` (None: the paper's square stretch)."""
    width, height = _as_size(image_size, "image_size")
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    if resize is None or resize.mode == "square":
        scaled = kps * np.array([eval_size / width, eval_size / height])
    else:
        scaled = resize.to_canvas(kps, width, height) * (eval_size / resize.size)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.round(np.clip(scaled, 0, eval_size - 1)).astype(np.int64)


def eval_pixels_to_image(pixels: np.ndarray, image_size: Sequence[int], eval_size: int, resize=None) -> np.ndarray:
    """(N, 2) eval-grid positions (col, row), possibly fractional → (N, 2) float64 (x, y) in a W×H image
    (``resize`` as in :func:`keypoints_to_eval_pixels`; a position on the padding maps outside the image)."""
    width, height = _as_size(image_size, "image_size")
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    if resize is None or resize.mode == "square":
        return pixels * np.array([width / eval_size, height / eval_size])
    return resize.from_canvas(pixels * (resize.size / eval_size), width, height)


def _as_feature_map(feat: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(feat, torch.Tensor):
        feat = torch.as_tensor(np.asarray(feat))
    if feat.ndim == 4 and feat.shape[0] == 1:
        feat = feat[0]
    if feat.ndim != 3:
        raise DataError(f"{what} must be a C×h×w feature map (or 1×C×h×w), got shape {tuple(feat.shape)}")
    return feat.to(torch.float32)


def sample_descriptors(feat: torch.Tensor, pixels: np.ndarray, eval_size: int) -> torch.Tensor:
    """Values of the bilinearly upsampled (to S×S) feature map at eval pixels (col, row): (N, C) float32,
    not normalised. Equals ``F.interpolate(feat[None], (S, S), mode="bilinear")[0][:, row, col].T``
    without building the S×S map."""
    feat = _as_feature_map(feat, "feature map")
    _, h, w = feat.shape
    pixels = torch.as_tensor(np.asarray(pixels, dtype=np.int64).reshape(-1, 2), device=feat.device)
    rows_w = bilinear_matrix(eval_size, h, device=feat.device)[pixels[:, 1]]  # (N, h)
    cols_w = bilinear_matrix(eval_size, w, device=feat.device)[pixels[:, 0]]  # (N, w)
    return torch.einsum("nh,chw,nw->nc", rows_w, feat, cols_w)


def band_rows_for(channels: int, eval_size: int, chunk_size: int, max_elements: int = DEFAULT_MAX_BAND_ELEMENTS) -> int:
    """Rows per target band so that one similarity block (chunk × rows × S) and the band's row-upsampled map
    (C × rows × w, w ≤ S: bounded here as C × rows × S) hold at most ``max_elements`` numbers (at least one row)."""
    return int(max(1, min(eval_size, max_elements // (eval_size * max(channels, chunk_size, 1)))))


def similarity_bands(descriptors: torch.Tensor, feat: torch.Tensor, eval_size: int, band_rows: int,
                     chunk_size: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(first_row, first_keypoint, sims)``: the cosine similarities (k, rows·S) of a chunk of
    L2-normalised descriptors (N×C) with a band of rows of the S×S bilinear upsampling of the C×h×w map
    ``feat``, its channels L2-normalised — computed without building the upsampled map (module docstring)."""
    feat = _as_feature_map(feat, "feature map")
    channels, h, w = feat.shape
    rows_matrix = bilinear_matrix(eval_size, h, device=feat.device)  # (S, h)
    cols_matrix = bilinear_matrix(eval_size, w, device=feat.device)  # (S, w); ≤ 2 adjacent non-zeros per row
    col_squares = cols_matrix * cols_matrix  # (S, w)
    col_pairs = cols_matrix[:, :-1] * cols_matrix[:, 1:]  # (S, w−1): weight products of neighbouring columns
    projected = torch.einsum("kc,chw->khw", descriptors, feat)  # d·F at the native pixels
    band_rows = int(max(1, band_rows))
    for first in range(0, eval_size, band_rows):
        rows = rows_matrix[first:first + band_rows]
        upsampled_rows = torch.einsum("rh,chw->crw", rows, feat)  # (C, r, w): rows upsampled, columns native
        squares = (upsampled_rows * upsampled_rows).sum(dim=0)  # (r, w)
        neighbours = (upsampled_rows[:, :, :-1] * upsampled_rows[:, :, 1:]).sum(dim=0)  # (r, w−1)
        norms = (squares @ col_squares.T + 2 * (neighbours @ col_pairs.T)).clamp_min(0).sqrt()  # (r, S)
        norms = norms.clamp_min(1e-12).reshape(-1)  # as F.normalize's eps
        for start in range(0, descriptors.shape[0], chunk_size):
            dots = torch.einsum("rh,khw,sw->krs", rows, projected[start:start + chunk_size], cols_matrix)
            yield first, start, dots.reshape(dots.shape[0], -1) / norms


def nn_transfer(
    src_feat: torch.Tensor,
    trg_feat: torch.Tensor,
    src_kps: np.ndarray,
    src_size: Sequence[int],
    trg_size: Sequence[int],
    eval_size: int = PAPER_EVAL_SIZE,
    *,
    method: str = "nn",
    temperature: float = DEFAULT_TEMPERATURE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_band_elements: int = DEFAULT_MAX_BAND_ELEMENTS,
    resize=None,
) -> np.ndarray:
    """Predict target keypoints for source keypoints by feature matching (paper §2.8).

    ``src_feat``, ``trg_feat``: C×h×w tensors (any h, w; the same C), e.g. the concatenated activations of
    the square-resized images. ``src_kps``: (N, 2) source keypoints (x, y) in original source pixels;
    ``src_size``/``trg_size``: original (width, height) (SPair's [W, H, C] also accepted).
    ``eval_size``: the square grid S both maps are bilinearly upsampled to (paper 512).
    ``method``: "nn" (hard argmax of cosine similarity; ties → first pixel in row-major order) or
    "soft-argmax" (softmax(similarity / ``temperature``)-weighted mean position; not the paper's).
    ``resize``: the stores' resize policy (None: the paper's square stretch; see the module docstring).
    Returns (N, 2) float64 predicted (x, y) in original target pixels; rows of missing source keypoints
    (NaN or negative) are NaN.
    """
    if method not in ("nn", "soft-argmax"):
        raise ConfigError(f"unknown matching method {method!r}; expected 'nn' or 'soft-argmax'")
    if method == "soft-argmax" and not temperature > 0:
        raise ConfigError(f"soft-argmax temperature must be positive, got {temperature}")
    if int(eval_size) < 1:
        raise ConfigError(f"eval_size must be a positive integer, got {eval_size}")
    eval_size = int(eval_size)
    src_feat = _as_feature_map(src_feat, "source feature map")
    trg_feat = _as_feature_map(trg_feat, "target feature map")
    if src_feat.shape[0] != trg_feat.shape[0]:
        raise DataError(f"source and target feature maps differ in channels: {src_feat.shape[0]} vs {trg_feat.shape[0]}")
    trg_feat = trg_feat.to(src_feat.device)
    kps = np.asarray(src_kps, dtype=np.float64).reshape(-1, 2)
    present = keypoints_present(kps)
    prediction = np.full(kps.shape, np.nan)
    if not present.any():
        return prediction

    pixels = keypoints_to_eval_pixels(kps[present], src_size, eval_size, resize)
    descriptors = torch.nn.functional.normalize(sample_descriptors(src_feat, pixels, eval_size), dim=1)
    n = descriptors.shape[0]
    device = descriptors.device
    if method == "nn":
        best_value = torch.full((n,), -torch.inf, device=device)
        best_index = torch.zeros(n, dtype=torch.long, device=device)
    else:
        running_max = torch.full((n,), -torch.inf, device=device)
        weight_sum = torch.zeros(n, dtype=torch.float64, device=device)
        col_sum = torch.zeros(n, dtype=torch.float64, device=device)
        row_sum = torch.zeros(n, dtype=torch.float64, device=device)
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size}")
    chunk_size = int(chunk_size)
    band_rows = band_rows_for(trg_feat.shape[0], eval_size, chunk_size, max_band_elements)
    for first_row, start, sims in similarity_bands(descriptors, trg_feat, eval_size, band_rows, chunk_size):
        positions = torch.arange(sims.shape[1], device=device) + first_row * eval_size
        stop = start + sims.shape[0]
        if method == "nn":
            value, index = sims.max(dim=1)
            better = value > best_value[start:stop]  # strict: earlier pixels win ties, as argmax does
            best_value[start:stop] = torch.where(better, value, best_value[start:stop])
            best_index[start:stop] = torch.where(better, positions[index], best_index[start:stop])
        else:
            logits = sims / temperature
            new_max = torch.maximum(running_max[start:stop], logits.max(dim=1).values)
            rescale = torch.exp(running_max[start:stop] - new_max).to(torch.float64)
            weights = torch.exp(logits - new_max[:, None]).to(torch.float64)
            cols = (positions % eval_size).to(torch.float64)
            rows = (positions // eval_size).to(torch.float64)
            weight_sum[start:stop] = weight_sum[start:stop] * rescale + weights.sum(dim=1)
            col_sum[start:stop] = col_sum[start:stop] * rescale + weights @ cols
            row_sum[start:stop] = row_sum[start:stop] * rescale + weights @ rows
            running_max[start:stop] = new_max
    if method == "nn":
        flat = best_index.cpu().numpy()
        eval_positions = np.stack([flat % eval_size, flat // eval_size], axis=1)
    else:
        eval_positions = torch.stack([col_sum / weight_sum, row_sum / weight_sum], dim=1).cpu().numpy()
    prediction[present] = eval_pixels_to_image(eval_positions, trg_size, eval_size, resize)
    return prediction


def transfer_pair(pair, src_feat: torch.Tensor, trg_feat: torch.Tensor, eval_size: int = PAPER_EVAL_SIZE, **kwargs) -> np.ndarray:
    """:func:`nn_transfer` for an :class:`diffact.data.spair.SPairPair` (its keypoints and sizes)."""
    return nn_transfer(src_feat, trg_feat, pair.src_kps, pair.src_size, pair.trg_size, eval_size, **kwargs)
