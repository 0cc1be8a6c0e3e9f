"""Several feature stores read as one (Ours-XL-t) and the authors' up-sampling of multi-layer sets (GDF
``extract_feature.py --aggregate_output`` + ``task-pixel.py``)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffact.extract.store import FeatureStore
from diffact.tasks.scarce.pixels import gather_pixels
from diffact.tasks.scarce.sources import CombinedStores, NearestToLargest, feature_source
from diffact.utils.errors import ConfigError, LayerError

SIZE = 16


def _store(root, layers: dict[str, tuple[int, int, int]], images=("train/a", "test/b"), seed=0):
    store = FeatureStore.create(root, {"test": str(root)})
    gen = torch.Generator().manual_seed(seed)
    for image in images:
        store.write(image, {name: torch.randn(*shape, generator=gen) for name, shape in layers.items()})
    return FeatureStore.open(root)


def _all_pixels(store, layers):
    return gather_pixels(store, "train/a", layers, np.arange(SIZE * SIZE), SIZE)


def _gdf(maps: list[torch.Tensor]) -> torch.Tensor:
    """The authors' code, written out: nearest to the largest side, concatenate, bilinear to SIZE², as P×C."""
    side = max(m.shape[-1] for m in maps)
    aggregated = torch.cat([F.interpolate(m[None].float(), side)[0] for m in maps])
    return F.interpolate(aggregated[None], (SIZE, SIZE), mode="bilinear")[0].reshape(aggregated.shape[0], -1).T


def test_nearest_bilinear_is_the_authors_two_step_upsampling(tmp_path):
    store = _store(tmp_path / "s", {"coarse": (3, 4, 4), "fine": (2, 8, 8)})
    layers = ["coarse", "fine"]
    maps = [store.read("train/a", [n])[n] for n in layers]
    got = _all_pixels(NearestToLargest(store, layers), layers)
    torch.testing.assert_close(got, _gdf(maps), rtol=1e-5, atol=1e-5)
    # bilinear from each native map is another thing for the coarse layer, the same for the largest one
    native = _all_pixels(feature_source(store, layers, "bilinear"), layers)
    assert not torch.allclose(native[:, :3], got[:, :3], atol=1e-3)
    torch.testing.assert_close(native[:, 3:], got[:, 3:])
    # one layer alone: the two modes agree
    torch.testing.assert_close(_all_pixels(feature_source(store, ["coarse"], "nearest-bilinear"), ["coarse"]),
                               _all_pixels(store, ["coarse"]))
    with pytest.raises(ConfigError, match="upsample"):
        feature_source(store, layers, "bicubic")


def test_combined_stores_concatenate_in_part_order_and_group_by_store(tmp_path):
    xl = _store(tmp_path / "xl", {"block5": (3, 4, 4), "block0": (2, 8, 8)}, seed=1)
    pg = _store(tmp_path / "pg", {"block5": (4, 2, 2)}, images=("train/a", "test/b", "test/c"), seed=2)
    both = CombinedStores([("sdxl", xl), ("pgv2", pg)])
    layers = ["sdxl:block5", "sdxl:block0", "pgv2:block5"]  # the same layer name in two models
    assert both.layers == layers and both.channels(layers) == 9
    assert both.image_ids() == xl.image_ids()  # the ids every store holds, in the first store's order
    view = NearestToLargest(both, layers)
    assert [view.shape(n) for n in layers] == [(3, 8, 8), (2, 8, 8), (4, 2, 2)]  # each store its own largest map
    got = _all_pixels(view, layers)
    xl_maps = [xl.read("train/a", [n])[n] for n in ("block5", "block0")]
    expected = torch.cat([_gdf(xl_maps), _gdf([pg.read("train/a", ["block5"])["block5"]])], dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(LayerError, match="store label"):
        both.shape("block5")
    with pytest.raises(ConfigError, match="distinct"):
        CombinedStores([("sdxl", xl), ("sdxl", pg)])
