import pytest
import torch

from diffact.extract.featureset import FeatureSet
from diffact.extract.store import FeatureStore
from diffact.utils.errors import LayerError


def _store(root, layers, seed):
    store = FeatureStore.create(root, {"seed": seed})
    g = torch.Generator().manual_seed(seed)
    for image_id in ("a", "b"):
        store.write(image_id, {n: torch.randn(*shape, generator=g) for n, shape in layers.items()})
    return store


def test_two_models_concatenate_in_order_and_resize(tmp_path):
    s1 = _store(tmp_path / "xl", {"up-level0-x": (4, 2, 2), "up-level1-y": (3, 4, 4)}, 1)
    s2 = _store(tmp_path / "v15", {"up-level0-x": (5, 4, 4)}, 2)
    fs = FeatureSet.from_stores([("xl", s1.root, None), ("v15", s2.root, ["up-level0-x"])])
    assert fs.layer_names == ["xl:up-level0-x", "xl:up-level1-y", "v15:up-level0-x"]
    assert fs.channels == 12 and fs.n_models == 2 and fs.image_ids() == ["a", "b"]
    out = fs.concat("a")
    assert out.shape == (12, 4, 4)
    torch.testing.assert_close(out[4:7], s1.read_layer("a", "up-level1-y"))
    torch.testing.assert_close(out[7:], s2.read_layer("a", "up-level0-x"))
    # nearest resize of a 2×2 map to 4×4 repeats each value in a 2×2 block
    assert torch.equal(fs.concat("a", mode="nearest")[:4, ::2, ::2], s1.read_layer("a", "up-level0-x"))


def test_unknown_layer_names_the_store(tmp_path):
    s1 = _store(tmp_path / "xl", {"up-level0-x": (4, 2, 2)}, 1)
    with pytest.raises(LayerError, match="feature store"):
        FeatureSet.from_stores([("xl", s1.root, ["up-level0-z"])])


def test_reopened_store_keeps_forward_order(tmp_path):
    layers = {"up-level1-b": (2, 2, 2), "down-level0-a": (2, 2, 2), "mid-c": (2, 2, 2)}
    _store(tmp_path / "s", layers, 0)
    assert FeatureStore.open(tmp_path / "s").layers == list(layers)
