"""Extraction into a feature store: stream a dataset's images through the extractor, one shard per image.

Peak memory is one batch of features, whatever the dataset size. Shards already present are skipped, so
rerunning after an interruption redoes only what is missing (and, because noise is seeded per image id,
gives byte-identical shards).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
from diffact.extract.store import FeatureStore, settings_key
from diffact.utils.errors import ConfigError

log = logging.getLogger(__name__)


def layer_spec_digest(family: str, layer_set: str) -> str:
    """Hash of a layer set file's text (or of an explicit comma list): part of the store key."""
    from diffact.extract.layersets import set_path

    path = set_path(family, layer_set)
    text = path.read_text() if path.is_file() else layer_set
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_settings(*, dataset: dict, model: dict, family: str, layer_set: str, extraction: ExtractionSettings,
                   storage_dtype: str) -> dict:
    """Everything that defines a store's content. The workflow hashes the same dict to name the folder."""
    return {
        "dataset": {k: dataset.get(k) for k in ("kind", "root", "split", "subset")},
        "model": {"source": model["source"], "revision": model.get("revision")},
        "family": family,
        "layers": {"set": layer_set, "digest": layer_spec_digest(family, layer_set)},
        "extraction": extraction.as_dict(),
        "storage_dtype": storage_dtype,
    }


def store_key(**kwargs) -> str:
    return settings_key(store_settings(**kwargs))


def extract_to_store(pipe, layers: Sequence[str], images: Sequence[tuple[str, Path]], out: str | Path,
                     settings: dict, extraction: ExtractionSettings, batch_size: int = 1,
                     storage_dtype: str = "float32", early_exit: bool = True) -> FeatureStore:
    """Extract ``layers`` for every (id, path) in ``images`` into the store at ``out``; returns the store."""
    from diffact.data.images import load_image_tensor

    if batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1, got {batch_size}")
    extractor = DiffusionFeatureExtractor(pipe, layers, extraction, early_exit=early_exit)
    store = FeatureStore.create(out, {**settings, "grid_timestep": extractor.timestep}, storage_dtype=storage_dtype)
    todo = [(i, p) for i, p in images if not store.has(i)]
    log.info("%s: %d images, %d already extracted, %d to do", out, len(images), len(images) - len(todo), len(todo))
    with tqdm(total=len(todo), desc=f"extract {Path(out).name}", unit="img") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = torch.stack([load_image_tensor(p, extraction.image_size)[0] for _, p in chunk])
            feats = extractor(batch, [i for i, _ in chunk])
            for b, (image_id, _) in enumerate(chunk):
                store.write(image_id, {name: value[b] for name, value in feats.items()})
            bar.update(len(chunk))
    store.finalize([i for i, _ in images])
    return store
