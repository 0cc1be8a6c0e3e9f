"""U-Net configs of the paper's models (diffusers ``unet/config.json`` fields that shape the network).

They let the catalog, the layer sets and the benchmarks work on the real architectures without the
weights: build the U-Net on the ``meta`` device (no memory) or with random weights (benchmarks).
Values copied from the models' hub configs (docs/paper.md §2.3 lists the resulting shapes); the other
components' configs (VAE, text encoders, scheduler) live beside them for the full-size stand-ins
(:mod:`diffact.models.standins`).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

from diffact.utils.errors import ModelError

# One folder per paper model with its pipeline's component configs, as the hub repository's
# <component>/config.json files (model_index.json, unet, vae, text_encoder[_2], scheduler; tokenizer*.json
# hold only what differs between the CLIP tokenizers: the pad token). hub_configs/README.md says where
# each value comes from.
HUB_CONFIGS = Path(__file__).with_name("hub_configs")

# Hub id -> folder in hub_configs/. runwayml/... is the original SD1.5 repository (now gone; same files).
HUB_MODELS: dict[str, str] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15",
    "runwayml/stable-diffusion-v1-5": "sd15",
    "stabilityai/stable-diffusion-2-1-base": "sd21",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
    "playgroundai/playground-v2-1024px-aesthetic": "pgv2",
    # DiTs (not in the paper; issue #17): their transformers and VAEs, so `diffact layers` lists them offline
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "pixart-sigma",
    "stabilityai/stable-diffusion-3-medium-diffusers": "sd3-medium",
    "black-forest-labs/FLUX.1-dev": "flux-dev",
    "black-forest-labs/FLUX.1-schnell": "flux-schnell",
}
# Architecture family of each folder. Playground v2 shares SDXL's architecture (paper §6, App. A).
FAMILIES = {"sd15": "sd15", "sd21": "sd21", "sdxl": "sdxl", "pgv2": "sdxl", "pixart-sigma": "pixart",
            "sd3-medium": "sd3", "flux-dev": "flux", "flux-schnell": "flux"}


@lru_cache(maxsize=None)
def _read_component(key: str, component: str) -> str:
    return (HUB_CONFIGS / key / f"{component}.json").read_text()


def component_config(key: str, component: str) -> dict:
    """The config of one component (``unet``, ``vae``, ``text_encoder``, ``scheduler``, ``model_index``, ...)
    of the paper model ``key`` (sd15 | sd21 | sdxl | pgv2), a fresh dict each call."""
    return json.loads(_read_component(key, component))


def pipeline_components(key: str) -> list[str]:
    """Component names of the model's pipeline that have a config here (model_index.json's entries)."""
    index = component_config(key, "model_index")
    return sorted(name for name, value in index.items()
                  if not name.startswith("_") and isinstance(value, list) and value[0] is not None)


REFERENCE_UNETS: dict[str, tuple[str, dict]] = {
    hub_id: (FAMILIES[key], component_config(key, "unet")) for hub_id, key in HUB_MODELS.items()
    if (HUB_CONFIGS / key / "unet.json").is_file()
}

# Image size the paper extracts at, per family (docs/paper.md §2.8: 512 for SD1.5/2.1, 1024 for SDXL/PGv2).
PAPER_IMAGE_SIZE = {"sd15": 512, "sd21": 512, "sdxl": 1024}


def reference_unet_config(model_id: str) -> dict | None:
    entry = REFERENCE_UNETS.get(model_id)
    return copy.deepcopy(entry[1]) if entry else None


def build_unet(config: dict, device: str = "meta"):
    """Build a ``UNet2DConditionModel`` from a config; on ``meta`` it costs no memory (shapes only)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel.from_config(config)


# ---- any pipeline's configs, from a known hub id or a local folder (offline listing) -----------------
ConfigReader = Callable[[str], "dict | None"]


def folder_reader(folder: Path) -> ConfigReader:
    """Component configs of a saved pipeline folder: ``model_index.json``, ``<component>/config.json``,
    ``tokenizer*/tokenizer_config.json`` (None where absent)."""
    def read(component: str) -> dict | None:
        if component == "model_index":
            path = folder / "model_index.json"
        elif component.startswith("tokenizer"):
            path = folder / component / "tokenizer_config.json"
        else:
            path = folder / component / "config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    return read


def hub_reader(key: str) -> ConfigReader:
    """Component configs of a known model's folder in hub_configs/ (None where absent)."""
    def read(component: str) -> dict | None:
        return component_config(key, component) if (HUB_CONFIGS / key / f"{component}.json").is_file() else None
    return read


def config_reader(model: str) -> ConfigReader:
    """The configs of a known hub id (no download) or of a local pipeline folder."""
    if not Path(model).exists() and model in HUB_MODELS:
        return hub_reader(HUB_MODELS[model])
    folder = Path(model)
    if not (folder / "model_index.json").is_file() and not any((folder / c / "config.json").is_file()
                                                                 for c in ("unet", "transformer")):
        raise ModelError(f"{model}: neither a known hub id ({', '.join(HUB_MODELS)}) nor a pipeline folder with "
                         "unet/config.json or transformer/config.json")
    return folder_reader(folder)


def build_denoiser(read: ConfigReader, where: str, device: str = "meta"):
    """The pipeline's denoiser (the ``unet`` or ``transformer`` component a family recognises) built from its
    config; on ``meta`` it costs no memory."""
    import torch

    import diffusers

    from diffact.families.registry import denoiser_attrs, find_family, supported_classes

    for component in denoiser_attrs():
        config = read(component)
        cls = getattr(diffusers, (config or {}).get("_class_name", ""), None)
        if cls is None:
            continue
        with torch.device(device):
            model = cls.from_config(config)
        if find_family(model) is not None:
            return model
    raise ModelError(f"{where}: no unet/ or transformer/ config of a supported class ({supported_classes()})")


def vae_factor(read: ConfigReader) -> int:
    """Spatial downsampling of the pipeline's VAE (8 when its config is not there)."""
    vae = read("vae")
    return 2 ** (len(vae["block_out_channels"]) - 1) if vae else 8


def listing_denoiser(model: str):
    """(denoiser on the meta device, default text tokens, VAE factor) for a known hub id or a local pipeline
    folder; no weights are read (``diffact layers``, budgets, figures)."""
    from diffact.families.registry import family_of

    read = config_reader(model)
    denoiser = build_denoiser(read, where=model)
    return denoiser, family_of(denoiser).text_tokens(read), vae_factor(read)
