"""The features a feature store would hold, extracted on demand instead of read from disk (issue #19, point 2).

Analyses that stream (``diffact pck-screen`` and ``diffact property-maps`` without ``--store``) take the arguments
of ``diffact extract`` and get, through :func:`open_extraction`, exactly the bytes that command would store:

* the same extractor (:meth:`diffact.api.FeatureExtractor.from_pretrained` with the same settings);
* the same batches: an image is extracted together with its batch of the dataset's image list, cut as
  ``diffact extract`` cuts it (:func:`batches_of`), because batched kernels may round a sample differently when
  its batch partners change; noise is seeded per image id, so extracting a batch again gives the same features;
* the store's cast to its storage dtype and its float32 read-back (:func:`as_stored`, then ``.float()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from diffact.extract.store import STORAGE_DTYPES

Features = dict[str, torch.Tensor]  # one image's activations, name → C×h×w


def features_nbytes(features: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in features.values())


def as_stored(value: torch.Tensor, storage_dtype: str) -> torch.Tensor:
    """One image's activation as a store holds it (:meth:`FeatureStore.write`'s cast), contiguous as a store reads
    it back: a token activation is a permuted view of the token layout, and numpy sums it in another order than
    the contiguous map (the property maps' last digits change). Always a copy, so that a kept image does not keep
    its whole batch's tensor alive."""
    return value.detach().to("cpu", STORAGE_DTYPES[storage_dtype], copy=True, memory_format=torch.contiguous_format)


def batches_of(image_ids: Sequence[str], batch_size: int) -> dict[str, list[str]]:
    """Image id → its batch of the dataset list cut into ``batch_size`` images (as ``diffact extract`` cuts it)."""
    batch_of = {}
    for start in range(0, len(image_ids), batch_size):
        batch = list(image_ids[start:start + batch_size])
        for image_id in batch:
            batch_of[image_id] = batch
    return batch_of


@dataclass
class StreamedExtraction:
    """What a store of these extraction arguments would hold, one batch at a time.

    ``extract_batch(ids, noise_ids=None)``: name → B×C×h×w float32 features of those images (a batch of
    :attr:`batch_of`), their noise seeded by ``noise_ids`` (default: the image ids, as a store seeds it);
    ``image_ids``: the dataset's image list, in the store's order; ``layers``: the activations, in the order a store
    lists them; ``resize``: :attr:`FeatureStore.resize` of such a store; ``channels``: the layers' channel total."""

    extract_batch: Callable[..., Mapping[str, torch.Tensor]]
    image_ids: list[str]
    layers: list[str]
    batch_size: int
    storage_dtype: str
    resize: object = None
    channels: int | None = None

    @property
    def batch_of(self) -> dict[str, list[str]]:
        return batches_of(self.image_ids, self.batch_size)

    def stored_batch(self, ids: Sequence[str], noise_ids: Sequence[str] | None = None) -> dict[str, Features]:
        """Image id → its features as a store holds them (storage dtype), for one batch; ``noise_ids`` seed the
        noise instead of the image ids (a fresh draw per visit, ``corr-train`` with ``--train-extract``)."""
        raw = self.extract_batch(ids, noise_ids)
        return {image_id: {name: as_stored(value[b], self.storage_dtype) for name, value in raw.items()}
                for b, image_id in enumerate(ids)}


def load_extractor(model: dict, layers, extraction, device: str | None = None):
    """The :class:`diffact.api.FeatureExtractor` ``diffact extract`` would use (text encoders released)."""
    from diffact.api import FeatureExtractor

    fx = FeatureExtractor.from_pretrained(model["source"], layers, family=model.get("family"),
                                          revision=model.get("revision"), variant=model.get("variant"),
                                          device=device, release_text_encoders=True, **extraction.as_dict())
    # As in `diffact extract`: every image needs the same memory again, so keep what is freed (after the model load).
    from diffact.utils.memory import reuse_freed_memory

    reuse_freed_memory()
    return fx


def extraction_over(fx, extraction, images: Sequence[tuple[str, object]], batch_size: int,
                    storage_dtype: str) -> StreamedExtraction:
    """The :class:`StreamedExtraction` of a loaded extractor over ``images`` ([(id, path)] in store order); several
    image lists (a model's trn and val splits) can share one extractor."""
    from diffact.data.images import ResizePolicy, load_image_tensor
    from diffact.utils.errors import ConfigError

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {batch_size}")
    path_of = dict(images)

    def extract_batch(ids: Sequence[str], noise_ids: Sequence[str] | None = None) -> Mapping[str, torch.Tensor]:
        # = diffact.extract.run.extract_to_store's batch, the noise seeded by noise_ids when given
        batch = torch.stack([load_image_tensor(path_of[i], extraction.image_size, extraction.resize)[0] for i in ids])
        return fx.extractor(batch, list(noise_ids if noise_ids is not None else ids))

    # FeatureStore.resize of a store with these settings: None is the paper's square stretch.
    resize = None if extraction.resize == "square" else ResizePolicy(extraction.resize, int(extraction.image_size))
    channels = sum(int(a.channels) for a in fx.extractor.layers)
    return StreamedExtraction(extract_batch, [i for i, _ in images], list(fx.layers), batch_size, storage_dtype,
                              resize, channels)


def open_extraction(model: dict, layers, extraction, images: Sequence[tuple[str, object]], batch_size: int,
                    storage_dtype: str, device: str | None = None) -> StreamedExtraction:
    """The :class:`StreamedExtraction` of a model (``source``, ``family``, ``revision``, ``variant``), a layer set and
    :class:`ExtractionSettings` over ``images`` ([(id, path)] in store order), as ``diffact extract`` would store
    them; the model is loaded here. ``diffact.extract.commands.streamed_extraction_from_args`` builds it from the
    arguments of ``diffact extract``."""
    from diffact.utils.errors import ConfigError

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {batch_size}")
    return extraction_over(load_extractor(model, layers, extraction, device), extraction, images, batch_size,
                           storage_dtype)
