"""From images to activations: the paper's extraction recipe (paper §3, paper_spec §2.1).

Image in [-1, 1] → VAE encode (latent ``sample`` with a seeded generator, or the ``mean``) × scaling
factor → forward-noise to timestep t with seeded Gaussian noise → ONE U-Net pass with the prompt
embedding (no classifier-free guidance) → the hooked activations. Nothing is denoised.

DiT pipelines (``pipe.transformer``: PixArt, SD3, Flux) follow the same recipe with their own
conditioning (PixArt: T5 embeddings + attention mask; SD3: + pooled projections; Flux: + pooled
projections, positional ids, guidance 3.5 for guidance-distilled models), their VAE's ``shift_factor``,
and, for flow-matching schedulers, ``scale_noise`` (x_t = σ·noise + (1−σ)·x_0) at the grid timestep
instead of ``add_noise``; Flux's latents are packed 2×2 into tokens as FluxPipeline does.

Every random draw is seeded per image id (not per batch position), so a resumed or re-batched
extraction gives the same features as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from diffact.extract.catalog_dit import dit_family
from diffact.extract.hooks import ActivationCapture
from diffact.utils.errors import ConfigError
from diffact.utils.seeding import torch_generator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything that changes the features (hashed into the feature-store key).

    t:           timestep on the scheduler's 1000-step grid (paper: 50; see :func:`grid_timestep`)
    prompt:      text prompt (paper: one per dataset, §2.8–2.10)
    image_size:  square side the image is resized to (paper: 512 SD1.5, 1024 SDXL)
    noise_seed:  base seed of the VAE sample and the diffusion noise
    ensemble:    number of noise draws averaged (paper: 1)
    vae_mode:    ``sample`` (paper) or ``mean``
    dtype:       model dtype
    """

    t: int = 50
    prompt: str = ""
    image_size: int = 512
    noise_seed: int = 0
    ensemble: int = 1
    vae_mode: str = "sample"
    dtype: str = "float32"

    def __post_init__(self):
        if self.vae_mode not in ("sample", "mean"):
            raise ConfigError(f"extraction.vae_mode must be 'sample' or 'mean', got {self.vae_mode!r}")
        if self.ensemble < 1:
            raise ConfigError(f"extraction.ensemble must be ≥ 1, got {self.ensemble}")
        if self.image_size < 8:
            raise ConfigError(f"extraction.image_size must be ≥ 8, got {self.image_size}")

    def as_dict(self) -> dict:
        return asdict(self)


# Flux-dev's default guidance_scale (FluxPipeline); fed to guidance-distilled transformers only.
FLUX_GUIDANCE = 3.5


def is_flow_matching(scheduler) -> bool:
    """Flow-matching schedulers (SD3, Flux) noise with ``scale_noise``, not ``add_noise``."""
    return hasattr(scheduler, "scale_noise")


def grid_timestep(scheduler, t: int, **set_timesteps_kwargs) -> int | float:
    """The timestep the paper's code actually uses for ``t`` (paper_spec §2.1 step 1).

    The code calls ``set_timesteps(1000)`` and img2img's ``get_timesteps(1000, strength=t/1000)``, i.e. the
    1000-step grid at index 1000−t; depending on the scheduler's spacing this is t or t±1. Flow-matching
    schedulers (whose img2img pipelines use the same rule) keep their float timestep σ·1000, which
    ``scale_noise`` must find exactly in the schedule; ``set_timesteps_kwargs`` carries Flux's ``mu``.
    """
    train_steps = scheduler.config.num_train_timesteps
    if not 0 < t <= train_steps:
        raise ConfigError(f"timestep t={t} outside the scheduler's range 1..{train_steps}")
    grid = copy.deepcopy(scheduler)
    grid.set_timesteps(train_steps, **set_timesteps_kwargs)
    start = max(train_steps - t, 0) * getattr(grid, "order", 1)
    return float(grid.timesteps[start]) if is_flow_matching(scheduler) else int(grid.timesteps[start])


@dataclass
class DiffusionFeatureExtractor:
    """Extract named activations from a loaded diffusers pipeline.

    >>> ex = DiffusionFeatureExtractor(pipe, ["up-level1-repeat1-vit-block0-cross-q"], ExtractionSettings(t=50))
    >>> feats = ex(images, ["img_000"])      # images: B×3×S×S in [-1, 1]
    >>> feats["up-level1-repeat1-vit-block0-cross-q"].shape   # B×C×h×w (float32, on CPU)
    """

    pipe: object
    layers: Sequence[str]
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)
    early_exit: bool = True

    def __post_init__(self):
        from diffact.models.loading import denoiser

        unet = getattr(self.pipe, "unet", None)
        self.unet = unet if unet is not None else denoiser(self.pipe)  # the denoiser; pipe.transformer for a DiT
        self.family = dit_family(self.unet)  # None for U-Nets
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.layers = ActivationCapture(self.unet, self.layers).activations  # validates names, forward order
        self.layer_names = [a.name for a in self.layers]
        self.scheduler = copy.deepcopy(self.pipe.scheduler)
        self.flow = is_flow_matching(self.scheduler)
        shift = self._timestep_shift()
        self.timestep = grid_timestep(self.scheduler, self.settings.t, **shift)
        self.scheduler.set_timesteps(self.scheduler.config.num_train_timesteps, **shift)
        self._text = self._encode_prompt(self.settings.prompt)
        log.info("extracting %d activations at t=%d (grid timestep %d)", len(self.layer_names), self.settings.t,
                 self.timestep)

    def _timestep_shift(self) -> dict:
        """Flux's resolution-dependent schedule shift ``mu`` (FluxPipeline's rule), for dynamic shifting."""
        if not self.scheduler.config.get("use_dynamic_shifting", False):
            return {}
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        side = self.settings.image_size // getattr(self.pipe, "vae_scale_factor", 8) // 2
        config = self.scheduler.config
        return {"mu": calculate_shift(side * side, config.get("base_image_seq_len", 256),
                                      config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                      config.get("max_shift", 1.15))}

    # ---- conditioning ----------------------------------------------------------------------------
    @torch.no_grad()
    def _encode_prompt(self, prompt: str) -> dict:
        if self.family == "pixart":
            embeds, mask, *_ = self.pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                                       num_images_per_prompt=1, device=self.device)
            size = self.settings.image_size
            extra = {"resolution": None, "aspect_ratio": None}
            if getattr(self.unet, "use_additional_conditions", False):  # PixArt-α 1024 (PixArtAlphaPipeline's rule)
                extra = {"resolution": torch.tensor([[size, size]], dtype=embeds.dtype, device=self.device),
                         "aspect_ratio": torch.tensor([[1.0]], dtype=embeds.dtype, device=self.device)}
            return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask, "added_cond_kwargs": extra}
        if self.family == "sd3":
            embeds, _, pooled, _ = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None,
                                                           device=self.device, num_images_per_prompt=1,
                                                           do_classifier_free_guidance=False)
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled}
        if self.family == "flux":
            embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                               num_images_per_prompt=1)
            cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}
            if self.unet.config.guidance_embeds:
                cond["guidance"] = torch.full([1], FLUX_GUIDANCE, dtype=torch.float32, device=self.device)
            return cond
        encoded = self.pipe.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=False)
        cond = {"encoder_hidden_states": encoded[0]}
        if self.unet.config.get("addition_embed_type") == "text_time":
            size = self.settings.image_size
            # SDXL micro-conditioning: original size, crop top-left, target size (paper_spec §2.1 step 2).
            time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=encoded[0].dtype, device=self.device)
            cond["added_cond_kwargs"] = {"text_embeds": encoded[2], "time_ids": time_ids}
        return cond

    def _batched_cond(self, batch: int) -> dict:
        """The prompt conditioning repeated over the batch (Flux's positional ids have no batch axis)."""
        def expand(v):
            return v if v is None else v.expand(batch, *v.shape[1:])

        cond = {}
        for key, value in self._text.items():
            if key == "txt_ids":
                cond[key] = value
            elif isinstance(value, dict):
                cond[key] = {k: expand(v) for k, v in value.items()}
            else:
                cond[key] = expand(value)
        return cond

    # ---- the recipe ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor, image_ids: Sequence[str]) -> torch.Tensor:
        """B×3×S×S in [-1,1] → B×4×(S/f)×(S/f) scaled latents; the VAE runs in fp32 (SDXL's VAE overflows in fp16)."""
        vae = self.pipe.vae
        upcast = vae.dtype != torch.float32 and vae.config.get("force_upcast", False)
        vae_dtype = torch.float32 if upcast else vae.dtype
        if upcast:
            vae.to(torch.float32)
        dist = vae.encode(images.to(self.device, vae_dtype)).latent_dist
        if self.settings.vae_mode == "mean":
            latents = dist.mean
        else:
            eps = torch.stack([torch.randn(dist.mean.shape[1:], generator=torch_generator(self.settings.noise_seed, "vae", i))
                               for i in image_ids]).to(dist.mean)
            latents = dist.mean + dist.std * eps
        if upcast:
            vae.to(self.dtype)
        shift = vae.config.get("shift_factor")  # SD3 / Flux VAEs: (z − shift) · scale
        if shift is not None:
            latents = latents - shift
        return (latents * vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def _one_draw(self, latents: torch.Tensor, image_ids: Sequence[str], draw: int) -> dict[str, torch.Tensor]:
        noise = torch.stack([torch.randn(latents.shape[1:], generator=torch_generator(self.settings.noise_seed, "noise", i, draw))
                             for i in image_ids]).to(latents)
        batch = latents.shape[0]
        cond = self._batched_cond(batch)
        if self.flow:  # x_t = σ·noise + (1−σ)·x_0 at the grid timestep σ·1000
            t = torch.full((batch,), self.timestep, dtype=self.scheduler.timesteps.dtype, device=self.device)
            model_in = self.scheduler.scale_noise(latents, t, noise)
        else:
            t = torch.full((batch,), self.timestep, dtype=torch.long, device=self.device)
            noisy = self.scheduler.add_noise(latents, noise, t)
            model_in = self.scheduler.scale_model_input(noisy, self.timestep)
        if self.family is None:
            forward = lambda: self.unet(model_in, t, return_dict=False, **cond)  # noqa: E731
        elif self.family == "flux":
            h, w = model_in.shape[-2:]
            if h % 2 or w % 2:
                raise ConfigError(f"Flux packs 2×2 latent patches; latent {h}×{w} is odd (change image_size)")
            packed = self.pipe._pack_latents(model_in, batch, model_in.shape[1], h, w)
            img_ids = self.pipe._prepare_latent_image_ids(batch, h // 2, w // 2, self.device, model_in.dtype)
            forward = lambda: self.unet(hidden_states=packed, timestep=t.to(model_in.dtype) / 1000,  # noqa: E731
                                        img_ids=img_ids, return_dict=False, **cond)
        else:  # PixArt, SD3: B×C×H×W latents, the timestep on the 1000 grid
            forward = lambda: self.unet(hidden_states=model_in, timestep=t, return_dict=False, **cond)  # noqa: E731
        with ActivationCapture(self.unet, self.layer_names, early_exit=self.early_exit) as cap:
            return cap.run(forward)

    def __call__(self, images: torch.Tensor, image_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """Features of a batch: name → B×C×h×w float32 CPU tensors, averaged over ``ensemble`` draws."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"expected images B×3×H×W, got {tuple(images.shape)}")
        if len(image_ids) != images.shape[0]:
            raise ConfigError("one image id per image is required (ids seed the noise)")
        latents = self.encode_latents(images, image_ids)
        total: dict[str, torch.Tensor] = {}
        for draw in range(self.settings.ensemble):
            feats = self._one_draw(latents, image_ids, draw)
            for name, value in feats.items():
                value = value.float().cpu()
                total[name] = value if draw == 0 else total[name] + value
        return {n: v / self.settings.ensemble for n, v in total.items()}
