"""The per-activation NN PCK screen streamed from the extractor: no feature store of the pool (issue #19, point 2).

:func:`screen_stream` gives the table :func:`diffact.tasks.correspondence.screen.screen_store` gives for a store
extracted with the same settings, byte for byte once written: the features are the store's bit for bit
(:mod:`diffact.streamed`: same extractor, same batches, the store's dtype cast and float32 read-back), and every
activation's accumulator sees the pairs in the same order (its per-image mean is a float sum, so order matters).

How it streams: the pairs are scored in order; the two images of a pair come from an in-memory cache or, on a
miss, from extracting the image's whole batch of the dataset list (the batch a store would have extracted it in).
Each image's features are needed by a few pairs only: the cache keeps those still needed, within ``buffer_mb``,
and when full drops the image needed furthest in the future (the best choice when the whole order is known in
advance, Belady's rule). An image dropped and needed again is extracted again: its noise is seeded by its id and
its batch is the same, so the features are the same. Peak memory: the cache, plus one batch of features, plus
the pair being scored.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Mapping, Sequence

import pandas as pd
from tqdm import tqdm

from diffact.data.registry import spair_image_id
from diffact.streamed import Features, StreamedExtraction, features_nbytes
from diffact.tasks.correspondence.matching import transfer_pair
from diffact.tasks.correspondence.pck import PCKAccumulator
from diffact.tasks.correspondence.screen import ALPHAS, _summary_row, kind_of
from diffact.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class FurthestUseCache:
    """Images' features within ``limit_bytes``; when full, the image whose next use is furthest away goes first.

    ``uses``: image id → the positions (ascending) of the pairs that read it; :meth:`used` consumes them as the
    screen advances. Images with no use left are dropped at once."""

    def __init__(self, limit_bytes: int, uses: Mapping[str, Sequence[int]]):
        self.limit_bytes = limit_bytes
        self.uses = {image_id: deque(positions) for image_id, positions in uses.items()}
        self.held: dict[str, Features] = {}
        self.nbytes = 0
        self.peak_bytes = 0

    def next_use(self, image_id: str) -> float:
        positions = self.uses.get(image_id)
        return positions[0] if positions else float("inf")

    def get(self, image_id: str) -> Features | None:
        return self.held.get(image_id)

    def offer(self, image_id: str, features: Features) -> None:
        """Hold ``features`` if the image is needed again and room can be made by dropping images needed later
        than it."""
        if image_id in self.held or not self.uses.get(image_id):
            return
        size = features_nbytes(features)
        if size > self.limit_bytes:
            return
        later = sorted((i for i in self.held if self.next_use(i) > self.next_use(image_id)),
                       key=self.next_use, reverse=True)
        free = self.limit_bytes - self.nbytes
        victims = []
        for victim in later:
            if free >= size:
                break
            victims.append(victim)
            free += features_nbytes(self.held[victim])
        if free < size:
            return  # everything held is needed sooner than this image: it is extracted again when its turn comes
        for victim in victims:
            self._drop(victim)
        self.held[image_id] = features
        self.nbytes += size
        self.peak_bytes = max(self.peak_bytes, self.nbytes)

    def used(self, image_id: str, position: int) -> None:
        """Pair ``position`` has read the image: its next use moves on, and with none left it is dropped."""
        positions = self.uses.get(image_id)
        while positions and positions[0] <= position:
            positions.popleft()
        if not positions and image_id in self.held:
            self._drop(image_id)

    def _drop(self, image_id: str) -> None:
        self.nbytes -= features_nbytes(self.held.pop(image_id))


def pair_ids(pair) -> tuple[str, str]:
    return spair_image_id(pair.category, pair.src_path), spair_image_id(pair.category, pair.trg_path)


def image_uses(pairs: Sequence, batch_of: Mapping[str, list[str]]) -> dict[str, list[int]]:
    """Image id → the positions of the pairs that read it, every image checked against the extraction's list."""
    uses: dict[str, list[int]] = {}
    for position, pair in enumerate(pairs):
        for image_id in pair_ids(pair):
            if image_id not in batch_of:
                raise DataError(f"image {image_id} of pair {position} ({pair.category}) is not in the dataset's "
                                "image list: pass the same dataset arguments as the extraction")
            uses.setdefault(image_id, []).append(position)
    return uses


def screen_stream(source: StreamedExtraction, pairs: Sequence, buffer_mb: float = 1024, eval_size: int = 64,
                  alphas: Sequence[float] = ALPHAS, layers: Sequence[str] | None = None,
                  label: str = "") -> pd.DataFrame:
    """The :func:`~diffact.tasks.correspondence.screen.screen_store` table of the features a store of ``source``
    would hold, without storing them (see the module docstring).

    ``layers``: score only these (default: every activation of ``source``, in its order). ``buffer_mb``: the most
    the cache of features may hold (0: every pair extracts its images)."""
    if buffer_mb < 0:
        raise ConfigError(f"--buffer-mb must be ≥ 0, got {buffer_mb}")
    if not pairs:
        raise DataError("no pairs to screen")
    batch_of = source.batch_of
    uses = image_uses(pairs, batch_of)
    cache = FurthestUseCache(int(buffer_mb * 2**20), uses)
    names = list(layers) if layers is not None else source.layers
    unknown = [n for n in names if n not in source.layers]
    if unknown:
        raise ConfigError(f"--layers: {', '.join(unknown)} not among the extracted activations")
    state = {"extracted": 0, "batches": 0, "extract_s": 0.0, "shapes": None}

    def extract(batch: list[str]) -> dict[str, Features]:
        """The features of ``batch`` as a store holds them; offers each image to the cache."""
        start = time.perf_counter()
        out = source.stored_batch(batch)
        state["extract_s"] += time.perf_counter() - start
        state["batches"] += 1
        state["extracted"] += len(batch)
        if state["shapes"] is None:
            state["shapes"] = {name: tuple(t.shape) for name, t in next(iter(out.values())).items()}
        for image_id, features in out.items():
            cache.offer(image_id, features)
        return out

    accumulators = {name: PCKAccumulator(alphas=tuple(alphas)) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for position, pair in enumerate(tqdm(pairs, desc=f"NN PCK stream {label}".rstrip(), unit="pair")):
        ids = pair_ids(pair)
        found = {image_id: cache.get(image_id) for image_id in ids}
        for image_id in ids:
            # This pair holds its images itself (outside the cache's budget): the cache weighs their later uses only.
            cache.used(image_id, position)
        for image_id in ids:
            if found[image_id] is None:
                found.update({i: f for i, f in extract(batch_of[image_id]).items() if i in ids})
        src, trg = (found[i] for i in ids)
        for name, acc in accumulators.items():
            start = time.perf_counter()
            # .float(): a store is read back as float32 (FeatureStore.read), whatever its storage dtype.
            acc.add_spair_pair(pair, transfer_pair(pair, src[name].float(), trg[name].float(), eval_size=eval_size,
                                                   resize=source.resize))
            seconds[name] += time.perf_counter() - start
    log.info("streamed %d pairs: %d image extractions in %d batches for %d images (%.1f s extracting), feature "
             "cache peak %.4g MB of %.4g MB", len(pairs), state["extracted"], state["batches"], len(uses),
             state["extract_s"], cache.peak_bytes / 2**20, buffer_mb)
    rows = []
    for index, (name, acc) in enumerate(accumulators.items()):
        channels, height, width = state["shapes"][name]
        rows.append({"forward_index": index, "layer": name, "kind": kind_of(name), "channels": channels,
                     "height": height, "width": width, **_summary_row(acc, seconds[name])})
    table = pd.DataFrame(rows)
    table.attrs["stream"] = {"image_extractions": state["extracted"], "images": len(uses),
                             "cache_peak_bytes": cache.peak_bytes}
    return table


class StreamedPairFeatures:
    """``features_of(pair)`` for :func:`~diffact.tasks.correspondence.aggregation.evaluate` (the hard NN of a layer
    set, ``corr-evaluate --method nn``) streamed from the extractor instead of read from a store: the same tensors
    :class:`~diffact.tasks.correspondence.aggregation.StorePairFeatures` gives for a store written with the same
    extraction arguments (the store's features bit for bit, as in :func:`screen_stream`; the same float32 read-back,
    bilinear resize and concatenation in ``layers`` order).

    ``pairs``: the evaluated pairs, in the order ``evaluate`` visits them (each call is the next pair): the cache of
    stored features (within ``buffer_mb``) drops the image needed furthest ahead, as the streamed screen's does.
    ``layers``: the activations to concatenate (default: every one of ``source``), picked from what is extracted,
    as ``--layers-file`` picks them from a store."""

    def __init__(self, source: StreamedExtraction, pairs: Sequence, size: int, layers: Sequence[str] | None = None,
                 device="cpu", buffer_mb: float = 1024):
        import torch

        if buffer_mb < 0:
            raise ConfigError(f"--buffer-mb must be ≥ 0, got {buffer_mb}")
        if size < 1:
            raise ConfigError(f"feature size must be positive, got {size}")
        self.source = source
        self.pairs = list(pairs)
        self.names = list(layers) if layers is not None else list(source.layers)
        unknown = [n for n in self.names if n not in source.layers]
        if unknown:
            raise ConfigError(f"layers {', '.join(unknown)} are not among the extracted activations")
        self.size = int(size)
        self.device = torch.device(device)
        self.resize = source.resize
        self.cache = FurthestUseCache(int(buffer_mb * 2**20), image_uses(self.pairs, source.batch_of))
        self.position = -1
        self.extracted = 0
        self._channels: int | None = None

    @property
    def n_models(self) -> int:
        return 1

    @property
    def channels(self) -> int:
        if self._channels is None:
            raise DataError("no image extracted yet: the channel count is known after the first pair")
        return self._channels

    def _maps(self, features: Features):
        from diffact.tasks.correspondence.aggregation import resize_and_concat

        # .float(): a store is read back as float32 (FeatureStore.read), whatever its storage dtype.
        result = resize_and_concat([features[n].float().to(self.device) for n in self.names], self.size)
        self._channels = int(result.shape[0])
        return result

    def __call__(self, pair):
        self.position += 1
        if self.position >= len(self.pairs) or pair_ids(self.pairs[self.position]) != pair_ids(pair):
            raise DataError(f"pair {self.position} is not the one planned: a StreamedPairFeatures reads its pairs "
                            "in the order it was given them")
        ids = pair_ids(pair)
        found = {image_id: self.cache.get(image_id) for image_id in ids}
        for image_id in ids:
            self.cache.used(image_id, self.position)
        for image_id in ids:
            if found[image_id] is None:
                batch = self.source.batch_of[image_id]
                stored = self.source.stored_batch(batch)
                self.extracted += len(batch)
                for other, features in stored.items():
                    self.cache.offer(other, {n: features[n] for n in self.names})
                found.update({i: {n: f[n] for n in self.names} for i, f in stored.items() if i in ids})
        return self._maps(found[ids[0]]), self._maps(found[ids[1]])


def visit_noise_id(image_id: str, role: str, seed: int, visit: int) -> str:
    """The id that seeds an image's VAE sample and diffusion noise at one visit (with the extraction's noise_seed):
    a fresh draw per (corr-train seed, split, image, visit), the same on every rerun."""
    return f"{image_id}@{role}-seed{seed}-visit{visit}"


class FreshNoiseFeatures:
    """``features_of(pair)`` for the trained aggregation with every image extracted anew at every visit, as GDF's
    ``task-corres.py`` does (``correspondence.table1.noise: stream``): no stored draws; the noise of each visit is
    seeded by :func:`visit_noise_id`, so the conv sees the diffusion noise as augmentation and each validation pass
    scores new draws, and the same config gives the same bytes.

    ``sources``: one :class:`StreamedExtraction` per model (concatenated in order, as StorePairFeatures' stores), each
    over the split's images. An image is extracted alone (batch 1), cast to the storage dtype and read back as float32
    (what a store of its draw would give), resized to ``size``² and concatenated. ``extractions`` counts the image
    passes per model (one per image and visit)."""

    def __init__(self, sources: Sequence[StreamedExtraction], size: int, role: str, seed: int, device="cpu"):
        import torch

        if not sources:
            raise ConfigError("FreshNoiseFeatures needs at least one model's extraction")
        if size < 1:
            raise ConfigError(f"feature size must be positive, got {size}")
        policies = {repr(s.resize) for s in sources}
        if len(policies) > 1:
            raise ConfigError(f"the models' extractions use different resize policies: {sorted(policies)}")
        self.sources = list(sources)
        self.size, self.role, self.seed = int(size), role, int(seed)
        self.device = torch.device(device)
        self.resize = self.sources[0].resize
        self._known = [set(s.image_ids) for s in self.sources]
        self._visits: dict[str, int] = {}
        self.extractions = 0

    @property
    def channels(self) -> int:
        return sum(int(s.channels) for s in self.sources)

    @property
    def n_models(self) -> int:
        return len(self.sources)

    @property
    def layers(self) -> list[list[str]]:
        return [list(s.layers) for s in self.sources]

    def image(self, category: str, path):
        from diffact.tasks.correspondence.aggregation import resize_and_concat

        image_id = spair_image_id(category, path)
        for known in self._known:
            if image_id not in known:
                raise DataError(f"image {image_id} is not in the {self.role} image list of the extraction arguments: "
                                "pass the same dataset arguments as the pairs' split")
        visit = self._visits.get(image_id, 0)
        self._visits[image_id] = visit + 1
        noise_id = visit_noise_id(image_id, self.role, self.seed, visit)
        maps = []
        for source in self.sources:
            # .float(): what a store of this draw would read back (FeatureStore.read), whatever its storage dtype.
            features = source.stored_batch([image_id], [noise_id])[image_id]
            maps.extend(features[name].float().to(self.device) for name in source.layers)
        self.extractions += 1
        return resize_and_concat(maps, self.size)

    def __call__(self, pair):
        return self.image(pair.category, pair.src_path), self.image(pair.category, pair.trg_path)
