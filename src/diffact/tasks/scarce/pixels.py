"""Per-pixel training data for the label-scarce pixel classifier, streamed from a feature store.

Protocol (paper §2.10; DDPM-seg ``train_interpreter.py`` / the paper's ``task-pixel.py``): every activation is
bilinear-resized to S×S (paper: 256²; a multi-layer set first brought to its largest map, :mod:`.sources`), labels
are nearest-resized to S×S, and in each *training* image a class with fewer than 20 pixels is set to the ignore
label 255. Every labelled pixel is one training sample.

The upstream code materialises all N×S²×C training pixels in RAM (30 × 65,536 × 3840 float32 ≈ 30 GB). Here:

* the S×S resize is never materialised: :func:`sample_bilinear` evaluates the bilinear resize only at the
  requested pixels (identical values to ``F.interpolate(..., mode="bilinear", align_corners=False)``);
* :class:`PixelStream` splits each epoch into *buffers* of at most ``buffer_pixels`` pixels. Every training
  image's labelled pixels are randomly permuted (seeded per epoch) and dealt into the buffers, so each buffer
  mixes pixels of all images (close to the upstream global shuffle) and each pixel appears in exactly one
  buffer per epoch. Building a buffer reads each image's native-resolution layers from the store's shard
  (lazy per-layer reads) and samples only that buffer's pixels.
* The stream owns **one** buffer allocation (``buffer_pixels × (4·C + 8)`` bytes at most: float32 features
  plus int64 labels), refilled in place for every buffer of every epoch. A consumer that still holds the
  previous buffer while asking for the next one (``for x, y in stream.buffers(e)`` does) therefore cannot
  double the memory; :attr:`PixelStream.peak_bytes` reports the allocation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# The settings and the protocol constants live in a module without torch (the command parser reads their defaults).
from diffact.tasks.scarce.settings import MIN_CLASS_PIXELS  # noqa: F401
from diffact.utils.seeding import numpy_rng

IGNORE = 255


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

    Every pixel of every training image appears in exactly one buffer per epoch, and every buffer holds at
    most ``buffer_pixels`` pixels (``n_buffers`` is the smallest count for which even the largest buffer fits).
    Buffer rows are grouped by image; the trainer draws its own random batches from each buffer.

    The yielded tensors are views of the stream's single buffer and are overwritten by the next one: copy
    what must outlive the next step (:func:`~diffact.tasks.scarce.ensemble.member_batches` copies its batches
    and leftover rows). Iterate one ``buffers()`` generator at a time; :meth:`release` frees the buffer.
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
        self.buffer_pixels = int(buffer_pixels)
        self.channels = sum(store.shape(name)[0] for name in self.layers)
        self.total_pixels = int(sum(img.pixels.size for img in self.images))
        self.n_buffers = buffer_count([img.pixels.size for img in self.images], self.buffer_pixels)
        self.capacity = max(buffer_sizes([img.pixels.size for img in self.images], self.n_buffers))
        self.peak_bytes = 0  # largest buffer allocation so far (features + labels), in bytes
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    @property
    def row_bytes(self) -> int:
        """Bytes of one buffered pixel: C float32 features and an int64 label."""
        return 4 * self.channels + 8

    def _buffer(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is None:
            self._x = torch.empty(self.capacity, self.channels, dtype=torch.float32)
            self._y = torch.empty(self.capacity, dtype=torch.int64)
            self.peak_bytes = max(self.peak_bytes, self.capacity * self.row_bytes)
        return self._x, self._y

    def release(self) -> None:
        """Free the buffer (the next ``buffers()`` call allocates it again)."""
        self._x = self._y = None

    def buffers(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = numpy_rng(self.seed, "pixel-stream", epoch)
        # Deal each image's shuffled pixels into n_buffers near-equal parts; part b of every image → buffer b.
        parts = [np.array_split(rng.permutation(img.pixels), self.n_buffers) for img in self.images]
        bx, by = self._buffer()
        for b in range(self.n_buffers):
            count = sum(p[b].size for p in parts)
            x, y = bx[:count], by[:count]
            row = 0
            for i in rng.permutation(len(self.images)):
                chosen = parts[i][b]
                if chosen.size == 0:
                    continue
                gather_pixels(self.store, self.images[i].key, self.layers, chosen, self.size, out=x[row : row + chosen.size])
                y[row : row + chosen.size] = torch.from_numpy(self.images[i].labels[chosen].astype(np.int64))
                row += chosen.size
            yield x, y


def buffer_sizes(pixel_counts: Sequence[int], n_buffers: int) -> list[int]:
    """Rows of each buffer when every image's pixels are dealt into ``n_buffers`` parts by ``np.array_split``
    (the first ``n mod k`` parts get one more); the same in every epoch, whatever the permutation."""
    sizes = [0] * n_buffers
    for n in pixel_counts:
        base, extra = divmod(int(n), n_buffers)
        for b in range(n_buffers):
            sizes[b] += base + (b < extra)
    return sizes


def buffer_count(pixel_counts: Sequence[int], buffer_pixels: int) -> int:
    """The fewest buffers for which no buffer exceeds ``buffer_pixels`` rows.

    Dealing every image into k parts adds up to one remainder pixel per image to a buffer, so ``ceil(total /
    buffer_pixels)`` buffers can overflow by up to the number of images; k grows until the largest fits.
    """
    counts = [int(n) for n in pixel_counts if n]
    total = sum(counts)
    if total <= buffer_pixels:
        return 1
    if buffer_pixels < len(counts):
        raise ValueError(f"buffer_pixels={buffer_pixels} is below the number of training images ({len(counts)}); "
                         "every buffer takes at least one pixel of each image")
    k = math.ceil(total / buffer_pixels)
    # Largest buffer = sum(ceil(n / k)) ≤ total / k + len(counts), so k ≤ ceil(total / (buffer_pixels − images))
    # suffices; the loop ends there at the latest.
    while sum(-(-n // k) for n in counts) > buffer_pixels:
        k += 1
    return k
