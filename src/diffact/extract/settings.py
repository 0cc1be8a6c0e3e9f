"""What names a feature store, without torch: the extraction settings (hashed into the store key), the store's
settings dict and its key. The workflow plans stores with these and every command parser reads their defaults, so
this module imports no torch, diffusers or numpy (``tests/test_light_imports.py``); the extraction itself is
:mod:`diffact.extract.pipeline`, the store format :mod:`diffact.extract.store`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Mapping

from diffact.utils.errors import ConfigError


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything that changes the features (hashed into the feature-store key).

    t:           timestep on the scheduler's 1000-step grid (paper: 50; see :func:`grid_timestep`)
    prompt:      text prompt (paper: one per dataset, §2.8–2.10)
    image_size:  side S of the square model input (paper: 512 SD1.5, 1024 SDXL)
    noise_seed:  base seed of the VAE sample and the diffusion noise
    ensemble:    number of noise draws averaged (paper: 1)
    vae_mode:    ``sample`` (paper) or ``mean``
    dtype:       model dtype
    resize:      ``square`` (paper: stretch to S×S) or ``aspect`` (long side to S, centred, padded; see
                 :class:`diffact.data.images.ResizePolicy`)
    inversion:   ``none`` (paper: forward noise) or ``ddim`` (deterministic DDIM inversion to t; module docstring)
    inversion_steps: DDIM steps from the clean latent to t (``inversion: ddim`` only)
    """

    t: int = 50
    prompt: str = ""
    image_size: int = 512
    noise_seed: int = 0
    ensemble: int = 1
    vae_mode: str = "sample"
    dtype: str = "float32"
    resize: str = "square"
    inversion: str = "none"
    inversion_steps: int = 10

    def __post_init__(self):
        from diffact.data.images import RESIZE_POLICIES

        if self.vae_mode not in ("sample", "mean"):
            raise ConfigError(f"extraction.vae_mode must be 'sample' or 'mean', got {self.vae_mode!r}")
        if self.ensemble < 1:
            raise ConfigError(f"extraction.ensemble must be ≥ 1, got {self.ensemble}")
        if self.image_size < 8:
            raise ConfigError(f"extraction.image_size must be ≥ 8, got {self.image_size}")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"extraction.resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}")
        if self.inversion not in INVERSIONS:
            raise ConfigError(f"extraction.inversion must be one of {', '.join(INVERSIONS)}, got {self.inversion!r}")
        if self.inversion_steps < 1:
            raise ConfigError(f"extraction.inversion_steps must be ≥ 1, got {self.inversion_steps}")
        if self.inversion != "none" and self.ensemble > 1:
            raise ConfigError(f"extraction.ensemble={self.ensemble} with inversion {self.inversion!r}: the inversion "
                              "is deterministic, so every draw would be the same; use ensemble: 1")

    def as_dict(self) -> dict:
        """Every option, defaults included (the store's metadata states them all)."""
        return asdict(self)

    def key_dict(self) -> dict:
        """The options hashed into the feature-store key. Options added after stores existed are left out
        while they have the value that reproduces the old behaviour (``resize: square``, ``inversion: none``
        and then ``inversion_steps`` too, which only matters with an inversion), so those stores keep their key."""
        options = self.as_dict()
        for name, old_behaviour in KEY_STABLE_DEFAULTS.items():
            if options[name] == old_behaviour:
                options.pop(name)
        if self.inversion == "none":
            options.pop("inversion_steps")
        return options


INVERSIONS = ("none", "ddim")
KEY_STABLE_DEFAULTS = {"resize": "square", "inversion": "none"}


def settings_key(settings: Mapping) -> str:
    """The store key: the first 12 hex digits of the SHA-256 of the settings as canonical JSON."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


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
        "extraction": extraction.key_dict(),
        "storage_dtype": storage_dtype,
    }


def store_key(**kwargs) -> str:
    return settings_key(store_settings(**kwargs))
