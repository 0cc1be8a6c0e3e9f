"""Feature sets: the layers of one or several feature stores read as one feature (multi-model
amalgamation, e.g. Ours-XL-t = SDXL practical ⊕ SD1.5 amalgamation ⊕ PGv2 block3-out = 8154 channels,
paper App. B.3, docs/paper.md §2.6).

A set is a list of parts, each a store and the layers taken from it. Layers are named
``<part label>:<layer>`` so two models' equally named activations stay apart. Reads are lazy per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from diffact.extract.store import FeatureStore
from diffact.utils.errors import DataError


@dataclass
class FeatureSet:
    parts: list[tuple[str, FeatureStore, list[str]]] = field(default_factory=list)

    @classmethod
    def from_stores(cls, stores: Sequence[tuple[str, str, Sequence[str] | None]]) -> "FeatureSet":
        """``stores``: (label, store folder, layers or None for all of the store's layers)."""
        parts = []
        for label, root, layers in stores:
            store = FeatureStore.open(root)
            names = list(layers) if layers else store.layers
            for name in names:
                store.shape(name)  # unknown names fail here, naming the store
            parts.append((label, store, names))
        return cls(parts)

    @property
    def n_models(self) -> int:
        return len(self.parts)

    @property
    def layer_names(self) -> list[str]:
        return [f"{label}:{name}" for label, _, names in self.parts for name in names]

    @property
    def channels(self) -> int:
        return sum(store.channels(names) for _, store, names in self.parts)

    def image_ids(self) -> list[str]:
        """Ids present in every part's store."""
        common = None
        for _, store, _ in self.parts:
            ids = set(store.image_ids())
            common = ids if common is None else common & ids
        return sorted(common or [])

    def read(self, image_id: str) -> dict[str, torch.Tensor]:
        feats = {}
        for label, store, names in self.parts:
            for name, value in store.read(image_id, names).items():
                feats[f"{label}:{name}"] = value
        return feats

    def concat(self, image_id: str, size: tuple[int, int] | None = None, mode: str = "bilinear") -> torch.Tensor:
        """All layers resized to ``size`` (default: the largest layer's) and concatenated: C×H×W."""
        feats = self.read(image_id)
        if not feats:
            raise DataError(f"feature set has no layers for {image_id!r}")
        if size is None:
            size = max((t.shape[-2:] for t in feats.values()), key=lambda hw: hw[0] * hw[1])
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        resized = [t if tuple(t.shape[-2:]) == tuple(size) else
                   F.interpolate(t[None], size=tuple(size), mode=mode, **kwargs)[0] for t in feats.values()]
        return torch.cat(resized, dim=0)
