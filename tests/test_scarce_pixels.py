"""Label resizing, the <20-pixel rule, bilinear sampling and the bounded streaming reader."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffact.extract.store import FeatureStore
from diffact.tasks.scarce.ensemble import member_batches
from diffact.tasks.scarce.pixels import (
    PixelStream, gather_pixels, ignore_small_classes, resize_label, sample_bilinear, training_image,
)


def test_resize_label_is_opencv_nearest():
    label = np.arange(6, dtype=np.uint8).reshape(2, 3)
    # floor(d · src / dst): rows 0,0,1,1 ; cols for 3 → 4: 0,0,1,2
    expected = np.array([[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [3, 3, 4, 5]], dtype=np.uint8)
    np.testing.assert_array_equal(resize_label(label, 4), expected)
    big = np.random.default_rng(0).integers(0, 9, (37, 53)).astype(np.uint8)
    torch_nearest = F.interpolate(torch.from_numpy(big)[None, None].float(), (16, 16), mode="nearest")[0, 0]
    np.testing.assert_array_equal(resize_label(big, 16), torch_nearest.numpy().astype(np.uint8))


def test_classes_under_20_pixels_become_ignore():
    label = np.zeros((10, 10), dtype=np.uint8)
    label[0, :19] = 1   # 19 pixels → ignored
    label[1, :] = 2     # 10 pixels + ...
    label[2, :] = 2     # ... 20 pixels → kept
    out = ignore_small_classes(label, num_classes=3)
    assert (out[0, :19] == 255).all() and (out[1:3] == 2).all() and (out[3:] == 0).all()
    assert label[0, 0] == 1  # input untouched


@pytest.mark.parametrize("native", [(5, 7), (16, 16), (24, 20)])
def test_sample_bilinear_equals_interpolate(native):
    feat = torch.randn(3, *native, generator=torch.Generator().manual_seed(0))
    size = 16
    full = F.interpolate(feat[None], (size, size), mode="bilinear", align_corners=False)[0]
    idx = np.array([0, 1, 15, 16, 100, 255, 240, 17])
    got = sample_bilinear(feat, idx, size)
    torch.testing.assert_close(got, full.reshape(3, -1)[:, idx].T, rtol=1e-5, atol=1e-5)


def _id_store(root, n_images, size, extra_layer=True):
    """Store whose features name their own pixel: channel 0 = image index, 1 = flat pixel index."""
    store = FeatureStore.create(root, {"test": "ids"})
    grid = torch.arange(size * size, dtype=torch.float32).reshape(1, size, size)
    for i in range(n_images):
        feats = {"ids": torch.cat([torch.full((1, size, size), float(i)), grid])}
        if extra_layer:
            feats["low"] = torch.randn(4, size // 2, size // 2)
        store.write(f"train/img_{i:03d}", feats)
    return FeatureStore.open(root)


def test_gather_concatenates_layers_in_the_requested_order(tmp_path):
    store = _id_store(tmp_path / "store", 1, 8)
    x = gather_pixels(store, "train/img_000", ["low", "ids"], np.array([3, 9]), 8)
    assert x.shape == (2, 6)
    assert x[:, 4].tolist() == [0.0, 0.0] and x[:, 5].tolist() == [3.0, 9.0]


def test_stream_yields_every_training_pixel_once_per_epoch_in_bounded_buffers(tmp_path):
    size, n = 8, 5
    store = _id_store(tmp_path / "store", n, size)
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        labels = rng.integers(0, 3, (size, size)).astype(np.uint8)
        labels[i, :] = 255  # some ignored pixels, different per image
        images.append(training_image(f"train/img_{i:03d}", labels))
    stream = PixelStream(store, ["ids"], images, size, buffer_pixels=50, seed=0)
    assert stream.total_pixels == n * (size * size - size) and stream.n_buffers == 6
    orders = []
    for epoch in range(2):
        seen = []
        for x, y in stream.buffers(epoch):
            assert x.shape[0] <= 50  # bounded by buffer_pixels (n_buffers grows if remainders would overflow)
            img, pix = x[:, 0].long(), x[:, 1].long()
            for k in range(len(y)):  # labels travel with their pixels
                assert y[k] == images[img[k]].labels[pix[k]]
            seen += list(zip(img.tolist(), pix.tolist()))
        expected = {(i, p) for i, im in enumerate(images) for p in im.pixels.tolist()}
        assert len(seen) == len(expected) and set(seen) == expected  # each exactly once
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_pixel_rate_keeps_a_fixed_fraction():
    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[0] = 255
    img = training_image("a", labels, pixel_rate=0.5, rng=np.random.default_rng(0))
    assert img.pixels.size == 45 and np.all(labels.ravel()[img.pixels] == 0)


def test_member_batches_give_each_member_every_pixel_once():
    buffers = [(torch.arange(n, dtype=torch.float32)[:, None] + offset, torch.arange(n) + offset)
               for n, offset in ((10, 0), (7, 100), (9, 200))]
    batches = list(member_batches(buffers, members=3, batch_size=4, rng=np.random.default_rng(0), drop_last=False))
    assert [b[0].shape for b in batches] == [(3, 4, 1)] * 6 + [(3, 2, 1)]  # 26 rows = 6 full + 2 left
    for m in range(3):
        values = torch.cat([xb[m, :, 0] for xb, _ in batches]).tolist()
        assert sorted(values) == sorted([*range(10), *range(100, 107), *range(200, 209)])
        assert torch.equal(torch.cat([yb[m] for _, yb in batches]).float(), torch.tensor(values))
    firsts = [batches[0][0][m, :, 0].tolist() for m in range(3)]
    assert firsts[0] != firsts[1] or firsts[1] != firsts[2]  # members draw their own order
    dropped = list(member_batches(buffers, 3, 4, np.random.default_rng(0), drop_last=True))
    assert len(dropped) == 6
