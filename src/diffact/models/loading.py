"""Load a diffusion pipeline the same way for every user: ``from_pretrained(hub id or local folder)``.

The demo's tiny models are saved with ``save_pretrained`` and go through exactly this code, as real
weights (e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``) do. Supported denoisers: a
``UNet2DConditionModel`` (``pipe.unet``) or a DiT whose class ``extract.catalog_dit`` walks
(``pipe.transformer``: PixArt-α/Σ, SD3/SD3.5, Flux); :func:`denoiser` returns it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from diffact.utils.errors import ModelError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ModelError(f"unsupported dtype {name!r}; expected one of {sorted(DTYPES)}") from None


def load_pipeline(ref: str, dtype: str = "float32", device: str = "auto", revision: str | None = None,
                  variant: str | None = None):
    """Load a diffusers pipeline from a hub id or a local folder, with clear errors for the usual failures."""
    from diffusers import DiffusionPipeline

    path = Path(ref)
    looks_local = path.is_absolute() or ref.startswith(".") or path.exists() or ref.count("/") != 1
    if looks_local:
        if not path.is_dir():
            raise ModelError(f"model folder {ref} does not exist (expected a diffusers pipeline folder or a hub id)")
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{ref}: no model_index.json; not a diffusers pipeline folder")
        part = "transformer" if (path / "transformer").is_dir() and not (path / "unet").is_dir() else "unet"
        if not any((path / part).glob("*.safetensors")) and not any((path / part).glob("*.bin")):
            raise ModelError(f"{ref}/{part}: no weights (*.safetensors or *.bin); the model folder is incomplete")
    kwargs = {"torch_dtype": torch_dtype(dtype)}
    if revision:
        kwargs["revision"] = revision
    if variant:
        kwargs["variant"] = variant
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    try:
        pipe = DiffusionPipeline.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {ref!r}: neither a complete local folder nor a cached/reachable hub "
                         f"model ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    denoiser(pipe, where=ref)  # raises ModelError for unsupported pipelines
    pipe.set_progress_bar_config(disable=True)
    target = pick_device(device)
    pipe.to(target)
    log.info("loaded %s (%s) on %s as %s", ref, type(pipe).__name__, target, dtype)
    return pipe


def denoiser(pipe, where: str | None = None):
    """The network whose activations are extracted: ``pipe.unet`` (a UNet2DConditionModel) or
    ``pipe.transformer`` (a supported DiT); ModelError naming the classes otherwise."""
    from diffact.extract.catalog_dit import DIT_WALKERS

    unet = getattr(pipe, "unet", None)
    if unet is not None and type(unet).__name__ == "UNet2DConditionModel":
        return unet
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None and type(transformer).__name__ in DIT_WALKERS:
        return transformer
    found = next((type(m).__name__ for m in (unet, transformer) if m is not None), "none")
    raise ModelError(f"{where or 'pipeline'}: unsupported model class {type(pipe).__name__} with denoiser {found} "
                     f"(expected a pipeline with a UNet2DConditionModel or a transformer of class "
                     f"{', '.join(DIT_WALKERS)})")


def unet_family(unet) -> str:
    """Layer-set family of a denoiser: ``sdxl`` for text_time-conditioned U-Nets (SDXL, Playground v2),
    ``sd15`` for other U-Nets (SD1.5 / SD2.1 layout), ``pixart`` / ``sd3`` / ``flux`` for DiTs."""
    from diffact.extract.catalog_dit import dit_family

    family = dit_family(unet)
    if family:
        return family
    return "sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd15"
