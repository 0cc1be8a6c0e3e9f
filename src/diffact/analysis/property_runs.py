"""Running the property analyses on real inputs: a diffusion pipeline, a feature store, the control U-Net.

The numbers themselves are defined in :mod:`diffact.analysis.properties`; this module feeds them:

* :func:`diffusion_noise_share` — P1 for a diffusion pipeline: each image is VAE-encoded once (the extractor's
  seeded latent sample) and pushed through the U-Net ``draws`` times with independent diffusion-noise draws
  (draw k is exactly the ``ensemble`` draw k of :class:`~diffact.extract.pipeline.DiffusionFeatureExtractor`, so
  draw 0 equals the feature store's features). Only the diffusion noise varies between draws.
* :func:`store_map_properties` — P2 and P3 from a feature store (the standard features) and the dataset's labels.
* :func:`control_features` — the control U-Net: a feature store of its clean-input activations plus P1 from
  forward-noised inputs (see :mod:`diffact.models.control_unet`).
* :func:`merge_property_tables` — one table per model: every (scene, activation) with its three numbers, name
  parts, NN PCK (from the correspondence screening) and the qualitative filter's verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from diffact.analysis.names import forward_sorted, parse_name, resolution_label
from diffact.utils.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
# torch (and the property numbers, diffact.analysis.properties) are imported by the functions that run a model or
# read features: merging the tables (`diffact properties-table`) and the notebooks' label readers run without it.


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def diffusion_noise_share(pipe, layers: Sequence[str], images: Sequence[tuple[str, Path]], settings, draws: int,
                          batch_size: int = 1, release_text_encoders: bool = False) -> pd.DataFrame:
    """P1 noise share of every layer of a diffusion pipeline over ``images`` (see the module docstring);
    ``release_text_encoders`` as in :class:`~diffact.extract.pipeline.DiffusionFeatureExtractor`."""
    import torch

    from diffact.analysis.properties import DrawMoments, NoiseShareAccumulator

    from diffact.data.images import load_image_tensor
    from diffact.extract.pipeline import DiffusionFeatureExtractor

    if draws < 2:
        raise ConfigError(f"the noise share needs ≥ 2 noise draws, got {draws}")
    extractor = DiffusionFeatureExtractor(pipe, layers, settings, release_text_encoders=release_text_encoders)
    acc = NoiseShareAccumulator()
    for chunk in tqdm(list(_batches(list(images), batch_size)), desc="noise draws", unit="batch"):
        ids = [i for i, _ in chunk]
        batch = torch.stack([load_image_tensor(p, settings.image_size, settings.resize)[0] for _, p in chunk])
        latents = extractor.encode_latents(batch, ids)
        moments = DrawMoments()
        for draw in range(draws):
            # The extractor's own draw: noise seeded by (noise_seed, "noise", image id, draw).
            moments.add(extractor._one_draw(latents, ids, draw))
        acc.add(moments)
    rows = acc.rows()
    order = {name: i for i, name in enumerate(extractor.layer_names)}
    return pd.DataFrame([{"forward_index": order[r["layer"]], **r} for r in rows]).sort_values("forward_index")


def segmentation_labels(root: str | Path):
    """``labels_of(image_id)`` for a DDPM-seg-layout dataset (ids ``<split>/<stem>``)."""
    from diffact.data.ddpmseg import load_label, open_ddpmseg

    dataset = open_ddpmseg(root, validate=False)
    items = dataset.by_id()

    def labels_of(image_id: str) -> np.ndarray:
        return load_label(item_of(items, image_id, root).label_path, dataset.num_classes, dataset.ignore_label)

    return labels_of, dataset.ignore_label


def item_of(items: Mapping, image_id: str, root):
    """The dataset item of a store id (``<split>/<stem>``, or a bare ``<stem>``)."""
    item = items.get(image_id) or next((v for v in items.values() if v.stem == image_id), None)
    if item is None:
        raise DataError(f"{root}: no labelled image for store id {image_id!r}")
    return item


def segmentation_images(root: str | Path):
    """``image_of(image_id)`` → 3×H×W image in [-1, 1] at its file size, for the pixel-locality baseline."""
    from diffact.data.ddpmseg import open_ddpmseg
    from diffact.data.images import load_rgb

    items = open_ddpmseg(root, validate=False).by_id()

    def image_of(image_id: str) -> torch.Tensor:
        import torch

        rgb = load_rgb(item_of(items, image_id, root).image_path)
        return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    return image_of


def store_map_properties(store, labels_root: str | Path | None = None, n_images: int = 0, n_pairs: int = 2000,
                         seed: int = 0, layers: Sequence[str] | None = None, observe=None) -> pd.DataFrame:
    """P2 granularity and (with a DDPM-seg ``labels_root``) P3 locality, with its pixel baseline, of every store layer.
    ``observe(image_id, layer, feature)``, when given, sees every feature read (the figure maps are taken from them
    on the way: :class:`diffact.viz.figure_maps.FigureMapRecorder`)."""
    image_ids = store.image_ids()
    if n_images:
        image_ids = image_ids[:n_images]
    if not image_ids:
        raise DataError(f"{store.root}: the feature store holds no images")
    return _map_properties_table(lambda image_id, name: store.read_layer(image_id, name), image_ids,
                                 layers if layers is not None else store.layers, labels_root, n_pairs, seed, observe)


def streamed_map_properties(source, labels_root: str | Path | None = None, n_images: int = 0, n_pairs: int = 2000,
                            seed: int = 0, observe=None) -> pd.DataFrame:
    """:func:`store_map_properties` of the store that ``source`` (a :class:`diffact.streamed.StreamedExtraction`)
    would fill, without the store: the images are visited in the store's order, so each batch is extracted once
    and dropped when the next begins (peak memory: one batch of features)."""
    image_ids = source.image_ids[:n_images] if n_images else source.image_ids
    batch_of = source.batch_of
    held: dict = {}  # image id → features of the batch being read
    bar = tqdm(total=len(image_ids), desc="property maps (streamed)", unit="img")

    def features_of(image_id: str, name: str) -> torch.Tensor:
        if image_id not in held:
            held.clear()
            held.update(source.stored_batch(batch_of[image_id]))  # the whole batch: its partners round alike
            bar.update(sum(i in image_ids for i in held))
        return held[image_id][name].float()  # a store is read back as float32 (FeatureStore.read)

    try:
        return _map_properties_table(features_of, image_ids, source.layers, labels_root, n_pairs, seed, observe)
    finally:
        bar.close()


def _map_properties_table(features_of, image_ids: Sequence[str], layers: Sequence[str],
                          labels_root: str | Path | None, n_pairs: int, seed: int, observe=None) -> pd.DataFrame:
    from diffact.analysis.properties import map_properties

    if observe is not None:
        read = features_of

        def features_of(image_id: str, name: str) -> torch.Tensor:
            feature = read(image_id, name)
            observe(image_id, name, feature)
            return feature

    labels_of, ignore = segmentation_labels(labels_root) if labels_root else (None, 255)
    image_of = segmentation_images(labels_root) if labels_root else None
    # Stores list layers alphabetically: restore the forward order (forward_index is the plots' x axis).
    names = forward_sorted(layers)
    rows = map_properties(features_of, image_ids, names, labels_of, n_pairs=n_pairs, seed=seed, ignore_label=ignore,
                          image_of=image_of)
    return pd.DataFrame(rows).sort_values("forward_index")


def control_features(model, images: Sequence[tuple[str, Path]], store_out: str | Path, t: int, draws: int,
                     seed: int = 0, batch_size: int = 4, settings: Mapping | None = None):
    """Write the control's clean-input activations as a feature store and return its P1 noise-share table."""
    import torch

    from diffact.analysis.properties import DrawMoments, NoiseShareAccumulator
    from diffact.data.images import load_image_tensor
    from diffact.extract.store import FeatureStore
    from diffact.models.control_unet import capture_activations, control_catalog, noised_images

    if draws < 2:
        raise ConfigError(f"the noise share needs ≥ 2 noise draws, got {draws}")
    names = [n for n, _ in control_catalog(model)]
    store = FeatureStore.create(store_out, {"model": "control-unet", "t": t, "seed": seed, **(settings or {})})
    acc = NoiseShareAccumulator()
    size = model.config.image_size
    for chunk in _batches(list(images), batch_size):
        ids = [i for i, _ in chunk]
        batch = torch.stack([load_image_tensor(p, size)[0] for _, p in chunk])
        clean = capture_activations(model, batch, names)
        for b, image_id in enumerate(ids):
            store.write(image_id, {n: v[b] for n, v in clean.items()})
        moments = DrawMoments()
        for draw in range(draws):
            moments.add(capture_activations(model, noised_images(batch, ids, t, seed, draw), names))
        acc.add(moments)
    store.finalize([i for i, _ in images])
    order = {n: i for i, n in enumerate(names)}
    return pd.DataFrame([{"forward_index": order[r["layer"]], **r} for r in acc.rows()]).sort_values("forward_index")


def name_columns(layers: Sequence[str]) -> pd.DataFrame:
    """stage, level, repeat, block, kind, resolution, inter_module for each layer name."""
    rows = []
    for name in layers:
        p = parse_name(name)
        rows.append({"layer": name, "stage": p.stage, "level": p.level, "repeat": p.repeat, "block": p.block,
                     "kind": p.kind, "resolution": resolution_label(p), "inter_module": p.is_inter_module})
    return pd.DataFrame(rows)


def merge_property_tables(noise: Mapping[str, pd.DataFrame], maps: Mapping[str, pd.DataFrame],
                          pck: pd.DataFrame | None = None, family: str | None = None,
                          model_name: str = "") -> pd.DataFrame:
    """One row per (scene, activation): the three numbers, name parts, NN PCK and the qualitative filter verdict."""
    from diffact.analysis.filter import qualitative_filter

    scenes = sorted(set(noise) | set(maps))
    if not scenes:
        raise ConfigError("merge_property_tables: no scene tables given")
    frames = []
    for scene in scenes:
        left = maps.get(scene)
        right = noise.get(scene)
        if left is None or right is None:
            raise ConfigError(f"scene {scene!r} needs both a noise-share and a maps table")
        right = right.drop(columns=[c for c in ("forward_index",) if c in right.columns])
        frame = left.merge(right, on="layer", how="outer", suffixes=("", "_noise"))
        frame.insert(0, "scene", scene)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    layers = list(dict.fromkeys(table.sort_values("forward_index").layer))
    table = table.merge(name_columns(layers), on="layer", how="left")
    if pck is not None and len(pck):
        metric = "pck_img@0.10" if "pck_img@0.10" in pck.columns else next(c for c in pck.columns if c.startswith("pck_"))
        table = table.merge(pck[["layer", metric]].rename(columns={metric: "nn_pck"}), on="layer", how="left")
    else:
        table["nn_pck"] = np.nan
    if family:
        kept = set(qualitative_filter(layers, family))
        table["filter_kept"] = table.layer.isin(kept)
    else:
        table["filter_kept"] = False
    table.insert(0, "model", model_name)
    return table.sort_values(["scene", "forward_index"]).reset_index(drop=True)
