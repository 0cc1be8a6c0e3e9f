"""The label-scarce training set's memory is bounded by the configured buffer, whatever the store's size.

Not timed and not RSS-based: the checks use what the stream reports (``PixelStream.peak_bytes``) and the
storage the yielded buffers actually occupy (distinct ``data_ptr``s), for stores several times the budget.
"""

import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from diffact.data.ddpmseg import open_ddpmseg
from diffact.extract.store import FeatureStore
from diffact.tasks.scarce.ensemble import EnsembleTrainSettings, member_batches, train_ensemble
from diffact.tasks.scarce.pipeline import ScarceConfig, run_scarce
from diffact.tasks.scarce.pixels import PixelStream, buffer_count, buffer_sizes, training_image

SIZE, C = 16, 12


def _store(root, n_images, seed=0):
    """n images of SIZE² random features (fp16, like the paper profile), two layers at different scales."""
    gen = torch.Generator().manual_seed(seed)
    store = FeatureStore.create(root, {"test": "memory"}, storage_dtype="float16")
    for i in range(n_images):
        store.write(f"train/im{i:02d}", {"a": torch.randn(C - 4, SIZE // 2, SIZE // 2, generator=gen),
                                         "b": torch.randn(4, SIZE, SIZE, generator=gen)})
    return FeatureStore.open(root)


def _images(n_images, seed=0):
    rng = np.random.default_rng(seed)
    return [training_image(f"train/im{i:02d}", rng.integers(0, 3, (SIZE, SIZE)).astype(np.uint8))
            for i in range(n_images)]


def _stored_bytes(tensors):
    """Bytes of the distinct storages behind some tensors (what holding them all costs)."""
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def test_a_consumer_holding_every_buffer_still_costs_one_buffer(tmp_path):
    n = 6
    store, images = _store(tmp_path / "store", n), _images(n)
    row_bytes = 4 * C + 8
    budget_pixels = 100  # 6 × 256 = 1536 training pixels: ~16 × the budget
    stream = PixelStream(store, ["a", "b"], images, SIZE, buffer_pixels=budget_pixels, seed=0)
    assert stream.total_pixels == n * SIZE * SIZE and stream.n_buffers >= 15
    held = []
    for x, y in stream.buffers(0):  # keeps a reference to every buffer, as a careless consumer would
        assert x.shape[0] <= budget_pixels
        held += [x, y]
    assert _stored_bytes(held) <= budget_pixels * row_bytes  # one storage, refilled in place
    assert stream.peak_bytes == _stored_bytes(held)  # and the stream reports it


class _Recording:
    """A stream as the trainer sees it, keeping every buffer it hands out alive."""

    def __init__(self, stream):
        self.stream, self.channels, self.seen = stream, stream.channels, []

    def buffers(self, epoch):
        for x, y in self.stream.buffers(epoch):
            self.seen += [x, y]
            yield x, y


def test_training_peak_buffer_stays_under_buffer_mb_for_a_store_larger_than_it(tmp_path):
    n = 8
    store, images = _store(tmp_path / "store", n), _images(n)
    config = ScarceConfig(size=SIZE, buffer_mb=0.02, train=EnsembleTrainSettings(members=2, max_epochs=2))
    budget = config.buffer_mb * 2**20
    assert n * SIZE * SIZE * (4 * C + 8) > 5 * budget  # the training set is several budgets large
    stream = PixelStream(store, ["a", "b"], images, SIZE, config.buffer_pixels(C), seed=0)
    assert stream.n_buffers > 1
    recording = _Recording(stream)
    train_ensemble(recording, 3, config.train, seed=0)
    assert len(recording.seen) == 2 * 2 * stream.n_buffers  # (x, y) × buffers × 2 epochs
    assert _stored_bytes(recording.seen) <= budget
    assert 0 < stream.peak_bytes <= budget


def test_no_buffer_exceeds_buffer_pixels_when_remainders_pile_up():
    counts = [13] * 7  # ceil(91 / 16) = 6 buffers would give the first one 7 × 3 = 21 rows
    k = buffer_count(counts, 16)
    assert max(buffer_sizes(counts, k)) <= 16 and sum(buffer_sizes(counts, k)) == 91
    assert k == 7  # the fewest that fit
    assert buffer_count([13] * 7, 91) == 1 and buffer_count([0, 5, 0], 5) == 1
    with pytest.raises(ValueError, match="number of training images"):
        buffer_count([3] * 7, 6)


def test_stream_with_overflowing_remainders_yields_each_pixel_once_within_the_bound(tmp_path):
    store = FeatureStore.create(tmp_path / "store", {"test": "ids"})
    grid = torch.arange(SIZE * SIZE, dtype=torch.float32).reshape(1, SIZE, SIZE)
    images = []
    for i in range(7):
        store.write(f"train/im{i:02d}", {"ids": torch.cat([torch.full((1, SIZE, SIZE), float(i)), grid])})
        labels = np.full((SIZE, SIZE), 255, dtype=np.uint8)
        labels.ravel()[np.random.default_rng(i).choice(SIZE * SIZE, 13, replace=False)] = 1
        images.append(training_image(f"train/im{i:02d}", labels))
    stream = PixelStream(FeatureStore.open(tmp_path / "store"), ["ids"], images, SIZE, buffer_pixels=16, seed=3)
    seen = []
    for x, y in stream.buffers(0):
        assert x.shape[0] <= 16 and (y == 1).all()
        seen += list(zip(x[:, 0].long().tolist(), x[:, 1].long().tolist()))
    assert sorted(seen) == sorted((i, p) for i, im in enumerate(images) for p in im.pixels.tolist())


def test_reused_buffer_gives_the_same_batches_as_fresh_copies(tmp_path):
    """In-place refilling changes no number: batches equal those drawn from copied buffers."""
    n = 5
    store, images = _store(tmp_path / "store", n), _images(n)
    stream = PixelStream(store, ["a", "b"], images, SIZE, buffer_pixels=150, seed=1)
    copies = [(x.clone(), y.clone()) for x, y in stream.buffers(0)]
    direct = list(member_batches(stream.buffers(0), 3, 16, np.random.default_rng(0)))
    again = list(member_batches(iter(copies), 3, 16, np.random.default_rng(0)))
    assert len(direct) == len(again) > 0
    for (xa, ya), (xb, yb) in zip(direct, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _dataset(root, store_root, n_train=6, n_test=2):
    rng = np.random.default_rng(0)
    store = FeatureStore.create(store_root, {"test": "memory-pipeline"}, storage_dtype="float16")
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        folder = root / "real" / split
        folder.mkdir(parents=True, exist_ok=True)
        label = np.kron(rng.integers(0, 3, (4, 4)), np.ones((4, 4), dtype=np.int64)).astype(np.uint8)
        Image.fromarray(np.zeros((SIZE, SIZE, 3), dtype=np.uint8)).save(folder / f"im{index}.png")
        np.save(folder / f"im{index}.npy", label)
        feats = np.eye(3, C)[label].transpose(2, 0, 1) * 2 + rng.normal(scale=0.5, size=(C, SIZE, SIZE))
        store.write(f"{split}/im{index}", {"f": torch.from_numpy(feats).float()})
    return open_ddpmseg(root, num_classes=3), FeatureStore.open(store_root)


def test_pipeline_with_a_small_budget_is_bounded_and_deterministic(tmp_path, caplog):
    dataset, store = _dataset(tmp_path / "data", tmp_path / "store")
    config = ScarceConfig(size=SIZE, splits=1, buffer_mb=0.01, train=EnsembleTrainSettings(members=2, max_epochs=2))
    with caplog.at_level(logging.INFO, logger="diffact.tasks.scarce.pipeline"):
        first = run_scarce(store, dataset, ["f"], config, progress=False)[0]
    lines = [r.getMessage() for r in caplog.records if "streamed in" in r.getMessage()]
    assert lines, "run_split logs its buffer"
    found = re.search(r"in (\d+) buffers .* buffer (\d+) bytes", lines[0])
    n_buffers, buffer_bytes = int(found[1]), int(found[2])
    assert n_buffers > 1 and 0 < buffer_bytes <= config.buffer_mb * 2**20
    again = run_scarce(store, dataset, ["f"], config, progress=False)[0]
    assert again.miou == first.miou and again.training == first.training
