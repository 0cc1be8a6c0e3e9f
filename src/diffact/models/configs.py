"""U-Net configs of the paper's models (diffusers ``unet/config.json`` fields that shape the network).

They let the catalog, the layer sets and the benchmarks work on the real architectures without the
weights: build the U-Net on the ``meta`` device (no memory) or with random weights (benchmarks).
Values copied from the models' hub configs (paper_spec §2.3 lists the resulting shapes); the other
components' configs (VAE, text encoders, scheduler) live beside them for the full-size stand-ins
(:mod:`diffact.models.standins`).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

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
}
# Architecture family of each folder. Playground v2 shares SDXL's architecture (paper §6, App. A).
FAMILIES = {"sd15": "sd15", "sd21": "sd21", "sdxl": "sdxl", "pgv2": "sdxl"}


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
}

# Image size the paper extracts at, per family (paper_spec §2.8: 512 for SD1.5/2.1, 1024 for SDXL/PGv2).
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
