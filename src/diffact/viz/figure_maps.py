"""The maps the property and PCA figures draw, computed where the features are read (issue #19, point 3): the figure
notebooks read this small file instead of a feature store, so `snakemake figures` needs no store.

For each of a few images and every activation (or those named), a figure-maps file (``.npz``,
:func:`diffact.utils.io.write_npz`) holds:

* ``rgb/<i>/<layer>``: the PCA → RGB map at the activation's own resolution (:func:`diffact.viz.pca.pca_rgb` without
  the up-sampling, which a figure does at the size of the largest map it shows: :meth:`FigureMaps.rgb`);
* with the dataset's labels, ``labels/<i>``: the image's label map (the figures show it), ``point/<i>/<layer>``
  (y, x): the query point on the object's boundary at that
  resolution (Fig 3c's orange circle, :func:`diffact.analysis.plots.query_point` of the labels resized to the map),
  and ``similarity/<i>/<layer>``: every pixel's cosine similarity to it (:func:`diffact.analysis.plots.similarity_map`);
* ``meta``: JSON with the image ids (``<i>`` is an index into them), their image files, and the layers in order.

The numbers are those the notebooks computed from the store: the features are the store's (read back, or streamed
as :mod:`diffact.streamed` gives them, byte-identical), float64 maps, the same functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from diffact.utils.errors import DataError

if TYPE_CHECKING:  # the notebooks read maps without torch (~2 s of CPU each to import); the recorder gets tensors
    import torch

LabelsOf = Callable[[str], np.ndarray]


class FigureMapRecorder:
    """Collects the figure maps of ``image_ids`` from features as an analysis reads them (:meth:`observe` is the
    ``observe`` hook of :func:`diffact.analysis.property_runs.store_map_properties`), or by itself (:meth:`read`)."""

    def __init__(self, image_ids: Sequence[str], labels_of: LabelsOf | None = None,
                 layers: Sequence[str] | None = None):
        self.image_ids = list(image_ids)
        self.index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        self.labels_of = labels_of
        self.only = set(layers) if layers is not None else None
        self.layers: list[str] = []  # in the order first seen
        self.arrays: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}

    def observe(self, image_id: str, layer: str, feature: torch.Tensor) -> None:
        """Record one C×h×w feature if its image (and layer) is one the figures show; others pass."""
        if image_id not in self.index or (self.only is not None and layer not in self.only):
            return
        from diffact.analysis.plots import query_point, similarity_map
        from diffact.analysis.properties import resize_labels
        from diffact.viz.pca import pca_rgb

        i = self.index[image_id]
        if layer not in self.layers:
            self.layers.append(layer)
        self.arrays[f"rgb/{i}/{layer}"] = pca_rgb(feature)
        if self.labels_of is not None:
            if image_id not in self._labels:
                self._labels[image_id] = self.labels_of(image_id)
                self.arrays[f"labels/{i}"] = self._labels[image_id]
            point = query_point(resize_labels(self._labels[image_id], *feature.shape[1:]))
            self.arrays[f"point/{i}/{layer}"] = np.asarray(point, dtype=np.int64)
            self.arrays[f"similarity/{i}/{layer}"] = similarity_map(feature, point)

    def read(self, features_of: Callable[[str, str], torch.Tensor], layers: Sequence[str]) -> None:
        """Record every (image, layer) from ``features_of(image_id, layer)``, image by image."""
        for image_id in self.image_ids:
            for layer in layers:
                self.observe(image_id, layer, features_of(image_id, layer))

    def save(self, path: str | Path, image_paths: Mapping[str, object] | None = None, **meta) -> None:
        """Write the file; ``image_paths``: image id → its file (the figures' photo column), ``meta``: provenance."""
        from diffact.utils.io import write_npz

        seen = {key.split("/")[1] for key in self.arrays if key.startswith("rgb/")}
        missing = [i for i in self.image_ids if str(self.index[i]) not in seen]
        if not self.image_ids or missing:
            raise DataError(f"{path}: no features were read for figure image(s) {', '.join(missing) or '(none given)'}")
        paths = image_paths or {}
        info = {"images": self.image_ids, "paths": [str(paths[i]) if paths.get(i) else None for i in self.image_ids],
                "layers": self.layers, **meta}
        write_npz(path, {"meta": np.array(json.dumps(info, sort_keys=True)), **self.arrays})


class FigureMaps:
    """A figure-maps file, as the notebooks read it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no figure-maps file (made by `diffact property-maps --figure-maps` or "
                            "`diffact figure-maps`)")
        self._npz = np.load(self.path, allow_pickle=False)
        self.meta = json.loads(str(self._npz["meta"]))
        self.image_ids: list[str] = list(self.meta["images"])
        self.layers: list[str] = list(self.meta["layers"])

    def _key(self, kind: str, image_id: str, layer: str) -> str:
        key = f"{kind}/{self.image_ids.index(image_id)}/{layer}"
        if key not in self._npz.files:
            raise DataError(f"{self.path}: no {kind} map of {layer!r} for image {image_id!r}")
        return key

    def image_path(self, image_id: str) -> str | None:
        """The image file of ``image_id`` (None when the dataset could not be read when the maps were made)."""
        return self.meta["paths"][self.image_ids.index(image_id)]

    def rgb(self, image_id: str, layer: str, size: int | None = None) -> np.ndarray:
        """H×W×3 PCA map in [0, 1], nearest-upsampled to ``size`` (as :func:`diffact.viz.pca.pca_rgb`)."""
        from diffact.viz.pca import nearest_resize

        return nearest_resize(self._npz[self._key("rgb", image_id, layer)], size)

    def shape(self, layer: str) -> tuple[int, int]:
        """(h, w) of an activation's map (every image of a store has the same)."""
        return tuple(self._npz[self._key("rgb", self.image_ids[0], layer)].shape[:2])

    def point(self, image_id: str, layer: str) -> tuple[int, int]:
        y, x = self._npz[self._key("point", image_id, layer)]
        return int(y), int(x)

    def similarity(self, image_id: str, layer: str) -> np.ndarray:
        return self._npz[self._key("similarity", image_id, layer)]

    def labels(self, image_id: str) -> np.ndarray:
        """The image's H×W label map (maps made with the dataset's labels only)."""
        key = f"labels/{self.image_ids.index(image_id)}"
        if key not in self._npz.files:
            raise DataError(f"{self.path}: no label map for image {image_id!r} (made without --labels-root)")
        return self._npz[key]
