"""What the pixel classifier reads: one feature store, several side by side (Ours-XL-t), and how a multi-layer set
is brought to one resolution before the S×S resize.

Both classes here look like a :class:`~diffact.extract.store.FeatureStore` to the pipeline (``root``, ``layers``,
``image_ids()``, ``shape()``, ``channels()``, ``read()``), so :mod:`.pixels` and :mod:`.pipeline` stay unaware of them.

Up-sampling (``upsample``), recorded in every output row:

* ``nearest-bilinear`` (default, the authors' code): every layer of a set is nearest-upsampled to the set's largest
  map, concatenated, then bilinear-resized to S×S. GDF ``extract_feature.py --aggregate_output`` does the first step
  (``F.interpolate(v, resize_target)``, torch's default mode ``nearest``, ``resize_target`` = the largest map side
  of that extraction run) and ``scarce_segmentation/task-pixel.py`` the second (``mode='bilinear'`` per feature id).
  With several stores (Ours-XL-t: one extraction run per model) the largest map is that of each store's own layers.
* ``bilinear``: every layer bilinear-resized from its native map (DDPM-seg's convention for single blocks).

For a set of one layer, or of layers that share one resolution, the two are the same.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

# The settings and the protocol constants live in a module without torch (the command parser reads their defaults).
from diffact.tasks.scarce.settings import UPSAMPLE_MODES
from diffact.utils.errors import ConfigError, LayerError

PART_SEP = ":"


class CombinedStores:
    """Several feature stores of the same images read as one, their layers concatenated in part order.

    ``parts``: ``(label, store)`` pairs; a layer is named ``<label>:<layer>`` (two models may hold layers of the same
    name, e.g. SDXL's and Playground v2's ``up-level0-repeat0-vit-block5-out``).
    """

    def __init__(self, parts: Sequence[tuple[str, object]]):
        labels = [label for label, _ in parts]
        if len(parts) < 2:
            raise ConfigError("combining feature stores needs at least two stores")
        if len(set(labels)) != len(labels) or any(not label or PART_SEP in label for label in labels):
            raise ConfigError(f"store labels must be distinct, non-empty and without {PART_SEP!r}: {labels}")
        policies = {getattr(store, "resize", None) for _, store in parts}
        if len(policies) > 1:  # the concatenated maps would not cover the same image area
            raise ConfigError(f"the feature stores were extracted with different resize policies: {policies}")
        self.parts = dict(parts)
        self.root = " + ".join(str(store.root) for _, store in parts)

    @property
    def layers(self) -> list[str]:
        return [f"{label}{PART_SEP}{name}" for label, store in self.parts.items() for name in store.layers]

    def split_name(self, name: str) -> tuple[str, str]:
        label, sep, layer = name.partition(PART_SEP)
        if not sep or label not in self.parts:
            raise LayerError(f"{name!r}: expected <store label>{PART_SEP}<layer> with a label among "
                             f"{list(self.parts)}")
        return label, layer

    def part_of(self, name: str) -> str:
        return self.split_name(name)[0]

    def shape(self, name: str) -> tuple[int, int, int]:
        label, layer = self.split_name(name)
        return self.parts[label].shape(layer)

    def channels(self, names: Iterable[str]) -> int:
        return sum(self.shape(name)[0] for name in names)

    def image_ids(self) -> list[str]:
        """Ids every store holds, in the first store's order."""
        stores = list(self.parts.values())
        common = set(stores[0].image_ids()).intersection(*(set(s.image_ids()) for s in stores[1:]))
        return [i for i in stores[0].image_ids() if i in common]

    def read(self, image_id: str, names: Iterable[str]) -> dict[str, torch.Tensor]:
        out = {}
        for name in names:
            label, layer = self.split_name(name)
            out[name] = self.parts[label].read(image_id, [layer])[layer]
        return out


class NearestToLargest:
    """A store whose given layers read nearest-upsampled to their group's largest map (GDF ``--aggregate_output``);
    a group is a store of :class:`CombinedStores` (``part_of``), else the whole set."""

    def __init__(self, store, layers: Sequence[str]):
        self.store = store
        self.root = store.root
        part_of = getattr(store, "part_of", lambda name: "")
        largest: dict[str, tuple[int, int]] = {}
        for name in layers:
            _, h, w = store.shape(name)
            group = part_of(name)
            gh, gw = largest.get(group, (0, 0))
            largest[group] = (max(gh, h), max(gw, w))
        self.targets = {name: largest[part_of(name)] for name in layers}

    @property
    def layers(self) -> list[str]:
        return self.store.layers

    def image_ids(self) -> list[str]:
        return self.store.image_ids()

    def shape(self, name: str) -> tuple[int, int, int]:
        c, h, w = self.store.shape(name)
        return (c, *self.targets.get(name, (h, w)))

    def channels(self, names: Iterable[str]) -> int:
        return sum(self.shape(name)[0] for name in names)

    def read(self, image_id: str, names: Iterable[str]) -> dict[str, torch.Tensor]:
        names = list(names)
        maps = self.store.read(image_id, names)
        out = {}
        for name in names:
            feature, target = maps[name], self.targets.get(name)
            if target is not None and tuple(feature.shape[-2:]) != target:
                feature = F.interpolate(feature[None].float(), size=target, mode="nearest")[0]
            out[name] = feature
        return out


def feature_source(store, layers: Sequence[str], upsample: str):
    """The store as the pixel classifier should read it for ``layers`` under ``upsample`` (see the module doc)."""
    if upsample not in UPSAMPLE_MODES:
        raise ConfigError(f"scarce upsample {upsample!r}: expected one of {', '.join(UPSAMPLE_MODES)}")
    return NearestToLargest(store, layers) if upsample == "nearest-bilinear" else store
