"""The label-scarce protocol end to end on a constructed dataset, plus re-splits and the store id scheme."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from diffact.data.ddpmseg import open_ddpmseg
from diffact.extract.store import FeatureStore
from diffact.tasks.scarce.ensemble import EnsembleTrainSettings
from diffact.tasks.scarce.metrics import mean_and_std
from diffact.tasks.scarce.pipeline import ScarceConfig, make_splits, run_scarce, store_key, summary_row
from diffact.utils.errors import DataError, LayerError

SIZE, K, C = 16, 3, 6


def test_splits_are_deterministic_disjoint_and_keep_the_train_count():
    a = make_splits(n_train=30, n_total=50, n_splits=5, seed=0)
    assert a == make_splits(30, 50, 5, seed=0)
    assert a != make_splits(30, 50, 5, seed=1)
    for train, test in a:
        assert len(train) == 30 and len(test) == 20
        assert not set(train) & set(test) and set(train) | set(test) == set(range(50))
    assert len({tuple(train) for train, _ in a}) == 5  # five different splits
    assert make_splits(30, 50, 5, seed=0, shuffle=False) == [(list(range(30)), list(range(30, 50)))]


def _linear_dataset(root, store_root, n_train=4, n_test=2, seed=0):
    """Blobby 3-class label maps; features = A[label] + noise, so label = argmax(A·f) (a linear function)."""
    rng = np.random.default_rng(seed)
    a = np.linalg.qr(rng.normal(size=(C, K)))[0].T * 2.0  # K×C, orthogonal rows
    store = FeatureStore.create(store_root, {"test": "linear"})
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        label = np.zeros((SIZE, SIZE), dtype=np.uint8)
        r, c = rng.integers(2, 8, 2)
        label[r : r + 7, :] = 1
        label[:, c : c + 5] = 2
        feats = a[label].transpose(2, 0, 1) + rng.normal(scale=0.3, size=(C, SIZE, SIZE))
        assert np.array_equal(np.einsum("kc,chw->khw", a, feats).argmax(0), label)
        folder = root / "real" / split
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / f"im{index}.png")
        np.save(folder / f"im{index}.npy", label)
        store.write(f"{split}/im{index}", {"feat": torch.from_numpy(feats).float(),
                                           "noise": torch.from_numpy(rng.normal(size=(4, 8, 8))).float()})
    return open_ddpmseg(root, num_classes=K), FeatureStore.open(store_root)


def test_ensemble_learns_linearly_separable_labels(tmp_path):
    dataset, store = _linear_dataset(tmp_path / "data", tmp_path / "store")
    config = ScarceConfig(size=SIZE, splits=2, seed=0, train=EnsembleTrainSettings(max_epochs=6))
    results = run_scarce(store, dataset, ["feat"], config, progress=False)
    assert len(results) == 2
    for r in results:
        assert r.miou > 90
        assert len(r.train_ids) == 4 and len(r.test_ids) == 2 and not set(r.train_ids) & set(r.test_ids)
        assert max(r.training["epochs"]) <= 6 and r.train_pixels == 4 * SIZE * SIZE
    assert results[0].train_ids != results[1].train_ids
    summary = summary_row(results, ["feat"], C, config, ("bg", "row", "col"))
    mean, std = mean_and_std([r.miou for r in results])
    assert summary["miou_mean"] == pytest.approx(mean, abs=1e-4) and summary["miou_std"] == pytest.approx(std, abs=1e-4)
    assert summary["n_splits"] == 2 and set(summary["class_iou"]) == {"bg", "row", "col"}
    # Same seed → same numbers (all randomness is seeded from the config and the split index).
    again = run_scarce(store, dataset, ["feat"], dataclasses.replace(config, splits=1), progress=False)
    assert again[0].miou == results[0].miou and again[0].test_ids == results[0].test_ids


def test_unknown_layer_and_missing_shard_are_reported(tmp_path):
    dataset, store = _linear_dataset(tmp_path / "data", tmp_path / "store", n_train=1, n_test=1)
    with pytest.raises(LayerError, match="nope"):
        run_scarce(store, dataset, ["nope"], ScarceConfig(size=SIZE, splits=1), progress=False)
    (store.root / "shards" / "test" / "im1.safetensors").unlink()
    with pytest.raises(DataError, match="im1.png"):
        run_scarce(store, dataset, ["feat"], ScarceConfig(size=SIZE, shuffle=False,
                                                          train=EnsembleTrainSettings(max_epochs=1)), progress=False)


def test_store_key_prefers_split_ids_and_falls_back_to_stems(tmp_path):
    dataset, _ = _linear_dataset(tmp_path / "data", tmp_path / "store", n_train=1, n_test=1)
    item = dataset.test[0]
    assert store_key({"test/im1", "im1"}, item) == "test/im1"
    assert store_key({"im1"}, item) == "im1"
    with pytest.raises(DataError, match="test/im1"):
        store_key({"train/im0"}, item)
