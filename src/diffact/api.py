"""The Python API: named activations of any supported diffusion model for your own images.

    >>> import diffact
    >>> fx = diffact.FeatureExtractor.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0", layers="practical")
    >>> feats = fx(["cat.jpg", "dog.png"])                 # paths, PIL images, H×W×3 uint8 arrays or tensors
    >>> {name: tuple(f.shape) for name, f in feats.items()}  # name → B×C×h×w float32 on the CPU
    >>> diffact.list_activations("black-forest-labs/FLUX.1-dev")[:2]   # the catalog, offline, no weights

This is the same extraction the workflow runs (``diffact extract`` builds its extractor with
:meth:`FeatureExtractor.from_pretrained`): the paper's recipe (:mod:`diffact.extract.pipeline`) — VAE latent,
forward noise to timestep ``t``, one denoiser pass with the prompt, hooks on the requested activations. Noise is
seeded per image id (``noise_seed`` + the id), so the same image under the same id gets the same features in any
batch. Ids default to a path's stem (as ``diffact extract`` names a folder's images) and to ``image<k>`` (the
k-th input of the call) otherwise; pass ``ids=`` to choose. Features of a whole call are held in memory: for a
dataset, use ``diffact extract`` (a feature store, one shard per image).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from diffact.utils.errors import ConfigError

ImageInput = "str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor"


class FeatureExtractor:
    """Named activations of one model at one set of extraction settings; call it on images.

    Build it with :meth:`from_pretrained` (loads the model), or from a pipeline you already hold:
    ``FeatureExtractor(pipe, ["up-level1-repeat1-vit-block0-cross-q"], ExtractionSettings(t=50))``.
    """

    def __init__(self, pipe, layers: str | Sequence[str], settings=None, *, family: str | None = None,
                 early_exit: bool = True, release_text_encoders: bool = False):
        from diffact.extract.layersets import resolve_layers_arg
        from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
        from diffact.families.registry import denoiser_of, family_of, get_family

        model = denoiser_of(pipe)
        self.family = (get_family(family) if family else family_of(model)).name
        self.pipe = pipe
        names = resolve_layers_arg(model, self.family, layers)
        self.settings = settings if settings is not None else ExtractionSettings()
        self.extractor = DiffusionFeatureExtractor(pipe, names, self.settings, early_exit=early_exit,
                                                   release_text_encoders=release_text_encoders)
        self.layers: list[str] = self.extractor.layer_names

    @classmethod
    def from_pretrained(cls, source: str, layers: str | Sequence[str] = "practical", *, t: int = 50,
                        prompt: str = "", image_size: int | None = None, noise_seed: int = 0, ensemble: int = 1,
                        vae_mode: str = "sample", resize: str = "square", inversion: str = "none",
                        inversion_steps: int = 10, device: str = "auto", dtype: str = "float32",
                        revision: str | None = None, variant: str | None = None, family: str | None = None,
                        early_exit: bool = True, release_text_encoders: bool = True) -> "FeatureExtractor":
        """Load ``source`` (a hub id, a pipeline folder or a single-file checkpoint; see
        :func:`diffact.models.loading.load_pipeline`) and prepare the extraction of ``layers`` (a layer-set name
        of the model's family, e.g. ``practical`` = the paper's Ours, or a list of catalog names).

        ``image_size`` defaults to the model's native size (512 SD1.5, 1024 SDXL); ``dtype`` ``auto`` picks the
        fastest this device runs natively. The pipeline's text encoders are released once the prompt is encoded
        (``release_text_encoders``): the extractor never needs them again, and SDXL's hold 3.3 GB."""
        from diffact.extract.pipeline import ExtractionSettings
        from diffact.families.registry import denoiser_of
        from diffact.models.loading import load_pipeline

        pipe = load_pipeline(source, dtype=dtype, device=device, revision=revision, variant=variant, family=family)
        if image_size is None:
            image_size = native_image_size(denoiser_of(pipe, where=source), getattr(pipe, "vae_scale_factor", 8))
        settings = ExtractionSettings(t=t, prompt=prompt, image_size=image_size, noise_seed=noise_seed,
                                      ensemble=ensemble, vae_mode=vae_mode, dtype=dtype, resize=resize,
                                      inversion=inversion, inversion_steps=inversion_steps)
        return cls(pipe, layers, settings, family=family, early_exit=early_exit,
                   release_text_encoders=release_text_encoders)

    def model_input(self, image) -> torch.Tensor:
        """One image as the model's 3×S×S input in [-1, 1] (paths and arrays resized by ``settings.resize``)."""
        from diffact.data.images import load_image_tensor, to_model_tensor

        size, resize = self.settings.image_size, self.settings.resize
        if isinstance(image, (str, os.PathLike)):
            return load_image_tensor(image, size, resize)[0]
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or tuple(image.shape) != (3, size, size):
                raise ConfigError(f"a tensor image must be the model input 3×{size}×{size} in [-1, 1], got "
                                  f"{tuple(image.shape)} (pass a path, PIL image or uint8 array to have it resized)")
            return image.float()
        if hasattr(image, "convert"):  # a PIL image
            image = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if isinstance(image, np.ndarray):
            return to_model_tensor(image, size, resize)
        raise ConfigError(f"cannot read an image from a {type(image).__name__}: expected a path, a PIL image, an "
                          "H×W×3 uint8 array or a 3×S×S tensor")

    def __call__(self, images, ids: Sequence[str] | None = None, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Features of ``images`` (one image, a list, or a B×3×S×S tensor): name → B×C×h×w float32 CPU tensors,
        in input order, computed ``batch_size`` images at a time."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if ids is None:
            ids = [Path(im).stem if isinstance(im, (str, os.PathLike)) else f"image{k}" for k, im in enumerate(images)]
        ids = [str(i) for i in ids]
        if len(ids) != len(images) or len(set(ids)) != len(ids):
            raise ConfigError(f"ids: need one distinct id per image ({len(images)} images, ids {ids[:5]}…)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.model_input(im) for im in images[start:start + batch_size]])
            for name, value in self.extractor(batch, ids[start:start + batch_size]).items():
                parts.setdefault(name, []).append(value)
        return {name: torch.cat(values) for name, values in parts.items()}


def native_image_size(model, vae_factor: int) -> int:
    """The image side a denoiser was trained at: its latent ``sample_size`` × the VAE factor (Flux has no
    sample_size; FluxPipeline's default is 1024 px)."""
    return int(model.config.get("sample_size", 1024 // vae_factor) * vae_factor)


def list_activations(source: str, maps: bool = False, resolution: int | None = None,
                     layer_set: str | None = None, family: str | None = None) -> list[dict]:
    """The catalog of a model from its configs alone (a known hub id or a pipeline folder; no weights, no
    download): one dict per activation in forward order with ``name``, ``kind``, ``channels``, ``height``,
    ``width``, ``module`` at ``resolution`` px (default: the model's native size). ``maps`` adds the attention
    maps; ``layer_set`` keeps one set of the model's family."""
    return catalog_table(source, maps, resolution, layer_set, family)[0]


def catalog_table(source: str, maps: bool = False, resolution: int | None = None, layer_set: str | None = None,
                  family: str | None = None) -> tuple[list[dict], int, int]:
    """:func:`list_activations` with the resolution and latent side it used (for ``diffact layers``)."""
    from diffact.extract.layersets import resolve_set
    from diffact.families.catalog import MAP_KINDS
    from diffact.families.registry import family_of, walk
    from diffact.models.configs import listing_denoiser

    model, text_tokens, vae_factor = listing_denoiser(source)
    resolution = resolution or native_image_size(model, vae_factor)
    if resolution % vae_factor:
        raise ConfigError(f"resolution {resolution} is not a multiple of the VAE factor {vae_factor}")
    latent = (resolution // vae_factor,) * 2
    entries = [a for a in walk(model) if maps or a.kind not in MAP_KINDS]
    patch = max((a.patch for a in entries), default=1)
    if latent[0] % patch:
        raise ConfigError(f"resolution {resolution}: latent {latent[0]} is not a multiple of the patch size {patch}")
    if layer_set:
        keep = set(resolve_set(model, family or family_of(model).name, layer_set))
        entries = [a for a in entries if a.name in keep]
    keys = ("name", "kind", "channels", "height", "width", "module")
    rows = [{k: row[k] for k in keys} for row in (a.as_row(latent, text_tokens) for a in entries)]
    return rows, resolution, latent[0]
