"""The three universal properties of diffusion-U-Net activations as numbers (paper §4; docs/paper.md §6).

The paper shows the properties only qualitatively (PCA → RGB maps, Figs 3, 5–18) and through PCK / mIoU of
single activations (Fig 4, Tables 4–6). Here each property gets one number per activation, computed from feature
maps alone, so it can be plotted along the forward order and compared between models (universality, §4.4) and
against a conventional U-Net (Fig 15). None of these numbers is from the paper; they are proxies [I].

P1, asymmetric diffusion noise → :func:`noise_share`
    Extract the same image K times at the same timestep with K independent diffusion-noise draws. For every
    channel c the feature F_k(c, p) (draw k, pixel p) splits into a part that changes with the draw and a spatial
    part that does not (one-way random-effects ANOVA over draws):

        σ²_noise(c)  = mean_p  Var_k F_k(c, p)                     (unbiased over the K draws)
        σ²_signal(c) = Var_p  mean_k F_k(c, p)  −  σ²_noise(c) / K   (unbiased over pixels, minus the noise
                                                                      the K-draw mean still carries)
        noise share  = Σ σ²_noise / (Σ σ²_noise + max(Σ σ²_signal, 0))

    with Σ over channels and images (so a channel counts by its variance, as in a PCA map). Pure noise gives ≈ 1,
    features that ignore the draw give exactly 0. Expected (paper §4.1): high in the down-stage, low in the early
    up-stage, rising again in the late up-stage.

P2, in-resolution granularity change → :func:`granularity`
    Power-weighted mean spatial frequency of the feature map, from its 2-D DCT-II (the even extension avoids the
    wrap-around edges an FFT would see): per channel the spatial mean is removed, the DCT power of all channels is
    summed (this total is invariant to rotations of the channel space, so it equals the spectrum of the full PCA
    map), and frequency index (k_h, k_w) of an H×W map sits at radius √((k_h/(H−1))² + (k_w/(W−1))²) / √2, i.e. as a
    fraction of the highest frequency that map size can hold. The power-weighted mean radius is in [0, 1] for every
    map size: 0.92–0.97 for a pixel checkerboard (4² to 32²), ≈ 0.36 for stripes of period 4 px, ≈ 0.75/N for a
    linear ramp over N pixels, 0 for a constant map. Expected (§4.2): rises within a resolution.

P3, locality without positional embeddings → :func:`locality`
    Among pixel pairs with the SAME ground-truth label, how strongly feature similarity falls with pixel distance:
    locality = −Spearman ρ(cosine similarity, distance) over seeded random same-label pairs (features centred per
    channel first, as the PCA maps are). A map that is a function of position only gives a value near 1; a map
    that depends on the label only gives ≈ 0 (all same-label pairs look alike). Also reported: the slope of a least
    squares line of similarity on distance (distance in units of the map side), and ``locality_excess``: the index
    minus that of the image's own pixels on the same pairs at the same resolution (coarse maps are more "local"
    whatever the network, so only the excess compares resolutions and networks). Expected (§4.3): highest for
    self-attention q/k, weaker for cross-attention q and block outputs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from diffact.data.ddpmseg import resize_labels
from diffact.utils.errors import DataError

# ---------------------------------------------------------------------------------------------------------------
# P1: noise share


def variance_components(mean: torch.Tensor, m2: torch.Tensor, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, (Σ_c σ²_noise(c), Σ_c σ²_signal(c)) from the K-draw moments of a B×C×H×W activation.

    ``mean`` is the mean over draws and ``m2`` the sum of squared deviations from it (Welford), both B×C×H×W.
    The signal part is not clipped here: clipping happens once, after pooling (:meth:`NoiseShareAccumulator.shares`).
    """
    if draws < 2:
        raise ValueError("the noise share needs at least 2 noise draws")
    noise = (m2 / (draws - 1)).double().mean(dim=(2, 3))  # B×C
    pixels = mean.shape[2] * mean.shape[3]
    if pixels < 2:
        spatial = torch.zeros_like(noise)
    else:
        spatial = mean.double().flatten(2).var(dim=2, unbiased=True)  # B×C
    signal = spatial - noise / draws
    return noise.sum(dim=1), signal.sum(dim=1)


def noise_share_of_draws(draws: torch.Tensor) -> float:
    """Noise share of one activation from its K draws stacked as K×C×H×W (or K×B×C×H×W)."""
    if draws.ndim == 4:
        draws = draws[:, None]
    mean = draws.double().mean(dim=0)
    m2 = ((draws.double() - mean) ** 2).sum(dim=0)
    noise, signal = variance_components(mean, m2, draws.shape[0])
    return noise_share(float(noise.sum()), float(signal.sum()))


def noise_share(noise: float, signal: float) -> float:
    """σ²_noise / (σ²_noise + max(σ²_signal, 0)); NaN for a constant activation."""
    total = noise + max(signal, 0.0)
    return noise / total if total > 0 else float("nan")


@dataclass
class DrawMoments:
    """Running mean and sum of squared deviations over noise draws (Welford), per activation of one batch.

    Memory: two float32 copies of one batch's features, whatever K is (Welford's update is stable in float32 for
    the few draws used here; the variance components are then summed in float64).
    """

    count: int = 0
    mean: dict[str, torch.Tensor] = field(default_factory=dict)
    m2: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, features: Mapping[str, torch.Tensor]) -> None:
        self.count += 1
        for name, value in features.items():
            value = value.detach().float().cpu()
            if self.count == 1:
                self.mean[name] = value.clone()
                self.m2[name] = torch.zeros_like(value)
                continue
            delta = value - self.mean[name]
            self.mean[name] += delta / self.count
            self.m2[name] += delta * (value - self.mean[name])


@dataclass
class NoiseShareAccumulator:
    """Pools the variance components of each activation over images (see the module docstring)."""

    noise: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    signal: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    images: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    draws: int = 0

    def add(self, moments: DrawMoments) -> None:
        self.draws = moments.count
        for name, mean in moments.mean.items():
            noise, signal = variance_components(mean, moments.m2[name], moments.count)
            self.noise[name] += float(noise.sum())
            self.signal[name] += float(signal.sum())
            self.images[name] += mean.shape[0]

    def shares(self) -> dict[str, float]:
        return {name: noise_share(self.noise[name], self.signal[name]) for name in self.noise}

    def rows(self) -> list[dict]:
        return [{"layer": name, "noise_share": noise_share(self.noise[name], self.signal[name]),
                 "noise_var": self.noise[name] / max(self.images[name], 1),
                 "signal_var": self.signal[name] / max(self.images[name], 1),
                 "draws": self.draws, "n_images": self.images[name]} for name in self.noise]


# ---------------------------------------------------------------------------------------------------------------
# P2: granularity

def dct_power(feature: torch.Tensor) -> np.ndarray:
    """H×W DCT-II power of a C×H×W map, summed over channels after removing each channel's spatial mean."""
    from scipy.fft import dctn

    if feature.ndim != 3:
        raise DataError(f"expected a C×H×W feature map, got shape {tuple(feature.shape)}")
    x = feature.detach().double().cpu().numpy()
    x = x - x.mean(axis=(1, 2), keepdims=True)
    coeffs = dctn(x, type=2, axes=(1, 2), norm="ortho")
    return (coeffs ** 2).sum(axis=0)


def normalised_radius(height: int, width: int) -> np.ndarray:
    """H×W radius of each DCT index as a fraction of the map's highest frequency (corner = 1)."""
    fh = np.arange(height) / max(height - 1, 1)
    fw = np.arange(width) / max(width - 1, 1)
    return np.sqrt(fh[:, None] ** 2 + fw[None, :] ** 2) / math.sqrt(2.0)


def granularity(feature: torch.Tensor) -> float:
    """Power-weighted mean spatial frequency of a C×H×W map in [0, 1] (0 for a constant map)."""
    power = dct_power(feature)
    total = power.sum()
    if total <= 0:
        return 0.0
    return float((power * normalised_radius(*power.shape)).sum() / total)


def cycles_per_image(granularity_value: float, side: int) -> float:
    """About the same centroid in cycles across the whole image (DCT index k of N ≈ k/2 cycles): absolute detail,
    for comparing maps of different resolution."""
    return granularity_value * math.sqrt(2.0) * (side - 1) / 2.0


# ---------------------------------------------------------------------------------------------------------------
# P3: locality


def same_label_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator,
                     ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs (flat indices a, b), a ≠ b, with labels[a] == labels[b] != ignore.

    The first pixel is uniform over labelled pixels that have a same-label partner, the second uniform over the
    other pixels of its class, so every pixel (not every pair) is equally likely to anchor a pair and one large
    class does not take all pairs.
    """
    flat = labels.reshape(-1)
    classes, counts = np.unique(flat[flat != ignore_label], return_counts=True)
    usable = classes[counts >= 2]
    members = {c: np.flatnonzero(flat == c) for c in usable}
    anchors = np.concatenate([members[c] for c in usable]) if len(usable) else np.empty(0, dtype=int)
    if anchors.size == 0 or n_pairs <= 0:
        return np.empty(0, dtype=int), np.empty(0, dtype=int)
    first = rng.choice(anchors, size=n_pairs)
    second = np.empty_like(first)
    for c in usable:
        rows = np.flatnonzero(flat[first] == c)
        if rows.size == 0:
            continue
        pool = members[c]
        # Draw among the class's other pixels: an offset in 1..n-1 from the anchor's slot, so a ≠ b.
        slot = np.searchsorted(pool, first[rows])
        offset = rng.integers(1, pool.size, size=rows.size)
        second[rows] = pool[(slot + offset) % pool.size]
    return first, second


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ with average ranks for ties; 0 when either side is constant (no dependence to measure)."""
    from scipy.stats import rankdata

    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def unit_pixel_vectors(feature: torch.Tensor) -> np.ndarray:
    """(H·W)×C rows: each channel centred over pixels, each pixel's vector L2-normalised (zero stays zero)."""
    c = feature.shape[0]
    x = feature.detach().double().cpu().reshape(c, -1).T.numpy()
    x = x - x.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-12)


def locality(feature: torch.Tensor, labels: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> dict:
    """Locality of one C×h×w map over given same-label pairs (flat indices into h×w; labels already h×w).

    Returns ``locality`` (−Spearman ρ of similarity vs distance), ``locality_slope`` (−d similarity / d distance,
    distance in map sides) and ``n_pairs``.
    """
    c, h, w = feature.shape
    if labels.shape != (h, w):
        raise DataError(f"labels of shape {labels.shape} do not match the {h}×{w} feature map")
    a, b = pairs
    if a.size < 3:
        return {"locality": float("nan"), "locality_slope": float("nan"), "n_pairs": int(a.size)}
    vectors = unit_pixel_vectors(feature)
    similarity = (vectors[a] * vectors[b]).sum(axis=1)
    distance = np.hypot(a // w - b // w, a % w - b % w) / max(h, w)
    spread = distance.var()
    slope = float(((distance - distance.mean()) * (similarity - similarity.mean())).mean() / spread) if spread > 0 else 0.0
    return {"locality": -rank_correlation(similarity, distance), "locality_slope": -slope, "n_pairs": int(a.size)}


# ---------------------------------------------------------------------------------------------------------------
# Per-activation tables


@dataclass
class MapPropertyAccumulator:
    """Averages granularity and locality of each activation over images (one value per image, then the mean)."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def add(self, name: str, feature: torch.Tensor, labels: np.ndarray | None = None,
            pairs: tuple[np.ndarray, np.ndarray] | None = None, baseline: float | None = None) -> None:
        """``baseline``: the locality of the image's own pixels on the same pairs (see :func:`map_properties`)."""
        self.shapes[name] = tuple(feature.shape)
        self.values[name]["granularity"].append(granularity(feature))
        if labels is not None and pairs is not None:
            result = locality(feature, labels, pairs)
            for key, value in result.items():
                self.values[name][key].append(value)
            if baseline is not None:
                self.values[name]["locality_pixels"].append(baseline)
                self.values[name]["locality_excess"].append(result["locality"] - baseline)

    def rows(self) -> list[dict]:
        rows = []
        for name, values in self.values.items():
            c, h, w = self.shapes[name]
            g = float(np.mean(values["granularity"]))
            row = {"layer": name, "channels": c, "height": h, "width": w, "granularity": g,
                   "cycles_per_image": cycles_per_image(g, max(h, w)), "n_images": len(values["granularity"])}
            for key in ("locality", "locality_slope", "locality_pixels", "locality_excess"):
                finite = [v for v in values.get(key, []) if np.isfinite(v)]
                row[key] = float(np.mean(finite)) if finite else float("nan")
            row["locality_pairs"] = int(sum(values.get("n_pairs", [])))
            rows.append(row)
        return rows


def pixel_locality(image: torch.Tensor, labels: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> float:
    """Locality of the image itself (3×H×W, area-averaged to the labels' h×w): how much nearby pixels of one label
    already look alike before any network; the baseline that :func:`map_properties` subtracts."""
    import torch.nn.functional as F

    small = F.adaptive_avg_pool2d(image[None].double(), labels.shape)[0]
    return locality(small, labels, pairs)["locality"]


def map_properties(features_of, image_ids: Sequence[str], layers: Sequence[str], labels_of=None,
                   n_pairs: int = 2000, seed: int = 0, ignore_label: int = 255, image_of=None) -> list[dict]:
    """Granularity (and, with ``labels_of``, locality) of every layer, averaged over ``image_ids``.

    ``features_of(image_id, layer)`` → C×h×w tensor; ``labels_of(image_id)`` → H×W uint8 labels (or None). Pairs are
    drawn once per (image, h, w) from ``numpy_rng(seed, "locality", image_id, h, w)``, so every activation of one
    resolution is scored on the same pixel pairs.

    With ``image_of(image_id)`` → 3×H×W image, each row also gets ``locality_pixels`` (the image's own locality on the
    same pairs at the map's resolution) and ``locality_excess`` = locality − locality_pixels. The raw index grows as
    maps get coarser (few pixels, each covering much of a part); the excess compares resolutions and networks on
    what the *features* add to the locality the image already has.
    """
    from diffact.utils.seeding import numpy_rng

    acc = MapPropertyAccumulator()
    pair_cache: dict[tuple[str, int, int], tuple] = {}
    for image_id in image_ids:
        full_labels = labels_of(image_id) if labels_of is not None else None
        image = image_of(image_id) if (image_of is not None and full_labels is not None) else None
        for layer in layers:
            feature = features_of(image_id, layer)
            if full_labels is None:
                acc.add(layer, feature)
                continue
            _, h, w = feature.shape
            key = (image_id, h, w)
            if key not in pair_cache:
                small = resize_labels(full_labels, h, w)
                rng = numpy_rng(seed, "locality", image_id, h, w)
                pairs = same_label_pairs(small, n_pairs, rng, ignore_label)
                baseline = pixel_locality(image, small, pairs) if image is not None else None
                pair_cache[key] = (small, pairs, baseline)
            small, pairs, baseline = pair_cache[key]
            acc.add(layer, feature, small, pairs, baseline)
    return [{"forward_index": layers.index(r["layer"]), **r} for r in acc.rows()]
