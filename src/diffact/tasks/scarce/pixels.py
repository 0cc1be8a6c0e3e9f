"""Per-pixel training data for the label-scarce pixel classifier, streamed from a feature store.

Protocol (paper §2.10; DDPM-seg ``train_interpreter.py`` / the paper's ``task-pixel.py``): every activation is
bilinear-resized to S×S (paper: 256²), labels are nearest-resized to S×S, and in each *training* image a class
with fewer than 20 pixels is set to the ignore label 255. Every labelled pixel is one training sample.

The upstream code materialises all N×S²×C training pixels in RAM (30 × 65,536 × 3840 float32 ≈ 30 GB). Here:

* the S×S resize is never materialised: :func:`sample_bilinear` evaluates the bilinear resize only at the
  requested pixels (identical values to ``F.interpolate(..., mode="bilinear", align_corners=False)``);
* :class:`PixelStream` splits each epoch into *buffers* of at most ``buffer_pixels`` pixels. Every training
  image's labelled pixels are randomly permuted and dealt into the buffers, so each buffer mixes pixels of all
  images (close to the upstream global shuffle) and each pixel appears in exactly one buffer per epoch.
  Building a buffer reads each image's native-resolution layers from the store (cheap, lazy per-layer reads)
  and samples only that buffer's pixels. Peak memory ≈ ``buffer_pixels × C × 4`` bytes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from diffact.utils.seeding import numpy_rng

IGNORE = 255
MIN_CLASS_PIXELS = 20  # DDPM-seg: "if 0 < (label == target).sum() < 20: label[label == target] = ignore"


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each destination index for nearest resizing: floor(d · src / dst).

    This is OpenCV's ``INTER_NEAREST`` (used by DDPM-seg's ``cv2.resize``) and torch's ``mode="nearest"``.
    """
    return (np.arange(dst, dtype=np.int64) * src) // dst


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Nearest-resize an H×W label map to size×size (paper §2.10: labels nearest-resized to 256)."""
    rows = nearest_index(label.shape[0], size)
    cols = nearest_index(label.shape[1], size)
    return np.ascontiguousarray(label[rows[:, None], cols[None, :]])


def ignore_small_classes(label: np.ndarray, num_classes: int, ignore_label: int = IGNORE,
                         min_pixels: int = MIN_CLASS_PIXELS) -> np.ndarray:
    """Set every class with 1..min_pixels-1 pixels in this image to ``ignore_label`` (training images only,
    after resizing, as DDPM-seg ``prepare_data`` does)."""
    out = label.copy()
    counts = np.bincount(label.ravel(), minlength=256)
    for cls in range(num_classes):
        if cls != ignore_label and 0 < counts[cls] < min_pixels:
            out[label == cls] = ignore_label
    return out


def sample_bilinear(feature: torch.Tensor, flat_index, size: int) -> torch.Tensor:
    """Values of ``F.interpolate(feature[None], (size, size), mode="bilinear")`` at some pixels, as P×C.

    ``feature`` is C×h×w; ``flat_index`` holds row-major indices into the size×size grid. ``grid_sample`` with
    ``align_corners=False`` and border padding uses the same source coordinate, (d + 0.5)·h/size − 0.5, clamped
    to the image, as ``interpolate``; only the requested pixels are computed.
    """
    idx = torch.as_tensor(np.asarray(flat_index), dtype=torch.int64)
    rows = torch.div(idx, size, rounding_mode="floor")
    cols = idx - rows * size
    # Normalised coordinates of the destination pixel centres: x = (2·col + 1)/size − 1.
    grid = torch.stack([(2 * cols + 1).float() / size - 1, (2 * rows + 1).float() / size - 1], dim=-1)
    out = F.grid_sample(feature[None].float(), grid[None, None], mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out[0, :, 0, :].T  # P×C


def gather_pixels(store, image_id: str, layers: Sequence[str], flat_index, size: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Features of the given pixels of one image, the layers concatenated along channels in ``layers`` order.

    Layers are read one at a time (lazy store reads), so only one native-resolution layer is in memory at once.
    """
    n = len(flat_index)
    channels = sum(store.shape(name)[0] for name in layers)
    if out is None:
        out = torch.empty(n, channels, dtype=torch.float32)
    start = 0
    for name in layers:
        feature = store.read(image_id, [name])[name]
        stop = start + feature.shape[0]
        out[:, start:stop] = sample_bilinear(feature, flat_index, size)
        start = stop
    return out


@dataclasses.dataclass
class TrainingImage:
    """A training image for the stream: its store key, its S×S labels (after the <20-pixel rule, flattened)
    and the flat indices of the pixels used for training (labelled, optionally subsampled)."""

    key: str
    labels: np.ndarray
    pixels: np.ndarray


def training_image(key: str, labels: np.ndarray, ignore_label: int = IGNORE, pixel_rate: float = 1.0,
                   rng: np.random.Generator | None = None) -> TrainingImage:
    """Select the training pixels of one image: all pixels whose label is not ignored, optionally a random
    ``pixel_rate`` fraction of them (fixed for the whole run; not in the paper, a knob for small machines)."""
    flat = np.ascontiguousarray(labels).ravel()
    pixels = np.flatnonzero(flat != ignore_label)
    if pixel_rate < 1.0 and pixels.size:
        keep = max(1, int(round(pixel_rate * pixels.size)))
        rng = rng if rng is not None else np.random.default_rng(0)
        pixels = np.sort(rng.choice(pixels, size=keep, replace=False))
    return TrainingImage(key, flat, pixels)


class PixelStream:
    """Yields each epoch's training pixels as a sequence of bounded buffers (x: P×C float32, y: P int64).

    Every pixel of every training image appears in exactly one buffer per epoch; a buffer holds at most
    ``buffer_pixels + len(images)`` pixels (the remainder of splitting each image evenly). Buffer rows are
    grouped by image; the trainer draws its own random batches from each buffer.
    """

    def __init__(self, store, layers: Sequence[str], images: Sequence[TrainingImage], size: int,
                 buffer_pixels: int, seed: int = 0) -> None:
        if buffer_pixels < 1:
            raise ValueError(f"buffer_pixels must be positive, got {buffer_pixels}")
        self.store = store
        self.layers = list(layers)
        self.images = list(images)
        self.size = size
        self.seed = seed
        self.channels = sum(store.shape(name)[0] for name in self.layers)
        self.total_pixels = int(sum(img.pixels.size for img in self.images))
        self.n_buffers = max(1, math.ceil(self.total_pixels / buffer_pixels))

    def buffers(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = numpy_rng(self.seed, "pixel-stream", epoch)
        # Deal each image's shuffled pixels into n_buffers near-equal parts; part b of every image → buffer b.
        parts = [np.array_split(rng.permutation(img.pixels), self.n_buffers) for img in self.images]
        for b in range(self.n_buffers):
            count = sum(p[b].size for p in parts)
            x = torch.empty(count, self.channels, dtype=torch.float32)
            y = torch.empty(count, dtype=torch.int64)
            row = 0
            for i in rng.permutation(len(self.images)):
                chosen = parts[i][b]
                if chosen.size == 0:
                    continue
                gather_pixels(self.store, self.images[i].key, self.layers, chosen, self.size, out=x[row : row + chosen.size])
                y[row : row + chosen.size] = torch.from_numpy(self.images[i].labels[chosen].astype(np.int64))
                row += chosen.size
            yield x, y
