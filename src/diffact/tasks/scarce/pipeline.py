"""Label-scarce segmentation with diffusion features: the paper's protocol end to end (paper §2.10, §4, §5).

For one set of activations (one or several store layers, concatenated along channels):

1. pool the original train and test images and draw ``splits`` random re-splits with the original train count
   (the paper's ``--shuffle_dataset``; 5 splits → mean ± std, Table 2);
2. per split, train the 10-MLP ensemble on the training pixels streamed from the feature store
   (:mod:`.pixels`, :mod:`.ensemble`) and predict every test pixel at S×S;
3. accumulate the confusion matrix over the test images and report mIoU (:mod:`.metrics`).

Image ids: the dataset's images are ``<split>/<stem>`` (original split, see :mod:`diffact.data.ddpmseg`) and the
feature store must hold a shard under that id (e.g. ``train/img_000``). Stores keyed by the bare ``<stem>`` are
accepted too when stems are unique (:func:`store_key`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Sequence

import numpy as np

from diffact.data.ddpmseg import SegDataset, SegImage, load_label
from diffact.tasks.scarce.ensemble import predict, train_ensemble
# The settings and the protocol constants live in a module without torch (the command parser reads their defaults).
from diffact.tasks.scarce.settings import ScarceConfig  # noqa: F401
from diffact.tasks.scarce.metrics import confusion_matrix, class_ious, mean_and_std, mean_iou
from diffact.tasks.scarce.pixels import (
    PixelStream, gather_pixels, ignore_small_classes, resize_label, training_image,
)
from diffact.tasks.scarce.sources import feature_source
from diffact.utils.errors import ConfigError, DataError, LayerError
from diffact.utils.seeding import numpy_rng

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SplitResult:
    split: int
    train_ids: list[str]
    test_ids: list[str]
    miou: float
    class_iou: list[float]
    train_pixels: int
    seconds: float
    training: dict


def make_splits(n_train: int, n_total: int, n_splits: int, seed: int, shuffle: bool = True) -> list[tuple[list[int], list[int]]]:
    """Index lists (train, test) into the pooled image list (original train images first, then test).

    ``shuffle``: each split is a random permutation of the pool from ``numpy_rng(seed, "split", s)``, cut at the
    original train count (the paper's ``--shuffle_dataset``). Otherwise the original split, once.
    """
    if not 0 < n_train < n_total:
        raise DataError(f"need at least one train and one test image, got {n_train} train of {n_total}")
    if not shuffle:
        return [(list(range(n_train)), list(range(n_train, n_total)))]
    splits = []
    for s in range(n_splits):
        perm = numpy_rng(seed, "split", s).permutation(n_total)
        splits.append((sorted(perm[:n_train].tolist()), sorted(perm[n_train:].tolist())))
    return splits


def store_key(store_ids: set[str], item: SegImage, store_root="feature store") -> str:
    """The store id of a dataset image: ``<split>/<stem>`` (preferred) or the bare ``<stem>``."""
    for key in (item.id, item.stem):
        if key in store_ids:
            return key
    raise DataError(f"{store_root}: no features for image {item.image_path} (expected id {item.id!r})")


def check_layers(store, layers: Sequence[str]) -> list[str]:
    layers = [name.strip() for name in layers if name.strip()]
    if not layers:
        raise LayerError("no layers given; name one or more activations held by the feature store")
    known = set(store.layers)
    missing = [name for name in layers if name not in known]
    if missing:
        raise LayerError(f"{store.root}: layers {missing} not in the feature store (it has {len(known)} layers, "
                         f"e.g. {store.layers[:3]})")
    return layers


def load_labels(dataset: SegDataset, size: int) -> dict[str, np.ndarray]:
    """Every image's label map nearest-resized to size×size, keyed by image id."""
    return {item.id: resize_label(load_label(item.label_path, dataset.num_classes, dataset.ignore_label), size)
            for item in dataset.images()}


def evaluate(model, store, layers: Sequence[str], keys: Sequence[str], labels: Sequence[np.ndarray], size: int,
             num_classes: int, ignore_label: int, chunk: int) -> np.ndarray:
    """Confusion matrix ((K+1)×K) of the ensemble over all test pixels at size×size (paper: 256²)."""
    conf = np.zeros((num_classes + 1, num_classes), dtype=np.int64)
    for key, label in zip(keys, labels):
        flat = label.ravel()
        pred = np.empty(flat.size, dtype=np.int64)
        for start in range(0, flat.size, chunk):
            idx = np.arange(start, min(start + chunk, flat.size))
            pred[idx] = predict(model, gather_pixels(store, key, layers, idx, size)).numpy()
        conf += confusion_matrix(pred, flat, num_classes, ignore_label)
    return conf


def run_split(store, dataset: SegDataset, layers: Sequence[str], labels: dict[str, np.ndarray],
              train_items: Sequence[SegImage], test_items: Sequence[SegImage], config: ScarceConfig,
              split: int, progress: bool = False) -> SplitResult:
    """Train on ``train_items`` and evaluate on ``test_items`` (one re-split)."""
    started = time.perf_counter()
    ids = set(store.image_ids())
    k, ignore = dataset.num_classes, dataset.ignore_label
    images = []
    for item in train_items:
        filtered = ignore_small_classes(labels[item.id], k, ignore, config.min_pixels)
        rng = numpy_rng(config.seed, "subsample", split, item.id)
        images.append(training_image(store_key(ids, item, store.root), filtered, ignore, config.pixel_rate, rng))
    channels = store.channels(layers) if hasattr(store, "channels") else sum(store.shape(n)[0] for n in layers)
    buffer_pixels = config.buffer_pixels(channels)
    if buffer_pixels < len(images):
        raise ConfigError(f"scarce buffer_mb={config.buffer_mb:g} holds {buffer_pixels} pixels of {channels} channels, "
                          f"fewer than the {len(images)} training images; raise buffer_mb")
    stream = PixelStream(store, layers, images, config.size, buffer_pixels,
                         seed=int(numpy_rng(config.seed, "stream", split).integers(2**62)))
    if stream.total_pixels < config.train.batch_size:
        raise DataError(f"{dataset.root}: only {stream.total_pixels} labelled training pixels in split {split}; "
                        f"need at least one batch of {config.train.batch_size}")
    model, info = train_ensemble(stream, k, config.train, seed=config.seed, keys=("split", split), progress=progress)
    log.info("split %d: training pixels streamed in %d buffers of <= %d pixels; buffer %d bytes", split,
             stream.n_buffers, stream.buffer_pixels, stream.peak_bytes)
    stream.release()  # the buffer is not needed for the evaluation
    test_keys = [store_key(ids, item, store.root) for item in test_items]
    conf = evaluate(model, store, layers, test_keys, [labels[item.id] for item in test_items], config.size, k,
                    ignore, config.predict_chunk)
    ious = class_ious(conf, ignore, config.ignored_pixels, config.absent)
    return SplitResult(
        split=split,
        train_ids=[item.id for item in train_items],
        test_ids=[item.id for item in test_items],
        miou=mean_iou(conf, ignore, config.ignored_pixels, config.absent),
        class_iou=[float(v * 100) for v in ious],
        train_pixels=stream.total_pixels,
        seconds=time.perf_counter() - started,
        training=info,
    )


def run_scarce(store, dataset: SegDataset, layers: Sequence[str], config: ScarceConfig,
               labels: dict[str, np.ndarray] | None = None, progress: bool = True) -> list[SplitResult]:
    """The full protocol for one activation set: ``config.splits`` re-splits → one :class:`SplitResult` each."""
    from tqdm.auto import tqdm

    config.validate()
    layers = check_layers(store, layers)
    store = feature_source(store, layers, config.upsample)
    labels = labels if labels is not None else load_labels(dataset, config.size)
    pool = dataset.images()
    splits = make_splits(len(dataset.train), len(pool), config.splits, config.seed, config.shuffle)
    results = []
    for s, (train_idx, test_idx) in enumerate(tqdm(splits, desc="+".join(layers)[:60], disable=None if progress else True)):
        result = run_split(store, dataset, layers, labels, [pool[i] for i in train_idx], [pool[i] for i in test_idx],
                           config, s, progress=progress)
        log.info("split %d/%d: mIoU %.2f (%d train px, %.1f s)", s + 1, len(splits), result.miou,
                 result.train_pixels, result.seconds)
        results.append(result)
    mean, std = mean_and_std([r.miou for r in results])
    log.info("%s: mIoU %.2f ± %.2f over %d splits", "+".join(layers), mean, std, len(results))
    return results


def split_rows(results: Sequence[SplitResult], layers: Sequence[str], channels: int, config: ScarceConfig) -> list[dict]:
    """One CSV row per split."""
    return [{
        "layers": "+".join(layers), "channels": channels, "split": r.split, "miou": round(r.miou, 4),
        "n_train": len(r.train_ids), "n_test": len(r.test_ids), "train_pixels": r.train_pixels,
        "epochs_mean": float(np.mean(r.training["epochs"])),  # wall-clock seconds: in the log only (determinism)
        "size": config.size, "upsample": config.upsample, "seed": config.seed, "test_ids": " ".join(r.test_ids),
    } for r in results]


def summary_row(results: Sequence[SplitResult], layers: Sequence[str], channels: int, config: ScarceConfig,
                class_names: Sequence[str] = ()) -> dict:
    """Mean ± std over splits (and mean per-class IoU) for one activation set."""
    mean, std = mean_and_std([r.miou for r in results])
    with warnings.catch_warnings():  # a class left out in every split (e.g. an in-range ignore label) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        per_class = np.nanmean(np.array([r.class_iou for r in results], dtype=np.float64), axis=0) if results else []
    return {
        "activation": "+".join(layers), "channels": channels, "miou_mean": round(mean, 4), "miou_std": round(std, 4),
        "n_splits": len(results), "miou_splits": ";".join(f"{r.miou:.4f}" for r in results),
        "size": config.size, "upsample": config.upsample, "seed": config.seed, "pixel_rate": config.pixel_rate,
        "protocol": config.protocol_key(), "class_iou": {name: round(float(v), 4) for name, v in zip(class_names, per_class)},
    }
