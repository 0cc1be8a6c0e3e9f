"""From images to activations: the paper's extraction recipe (paper §3, docs/paper.md §2.1).

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

Optional DDIM inversion (``inversion: ddim``; the paper's code has it but the paper does not use it,
docs/paper.md §2.1 step 5): instead of adding random noise, the clean latent is carried to timestep t
deterministically by ``inversion_steps`` DDIM steps on the 1000-step grid, 0 = t_0 < t_1 < … < t_K = t,
each with the prompt conditioning (an empty prompt gives the unconditional inversion). One step is the
deterministic DDIM update (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021, Eq. 12 with
σ = 0) run towards more noise, as in their §4.3 / Eq. 14 encoding:

    ε = ε_θ(x_s, s),   x̂_0 = (x_s − √(1−ᾱ_s)·ε) / √ᾱ_s,   x_{s'} = √ᾱ_{s'}·x̂_0 + √(1−ᾱ_{s'})·ε

with ᾱ of the clean latent (t_0) taken as 1. The capture pass then runs once on x_t at the grid timestep t.
The whole recipe is deterministic (given the VAE latent: use ``vae_mode: mean`` for no randomness at all).
Flow-matching models (SD3, Flux) have no ᾱ schedule and are refused.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from diffact.extract.hooks import ActivationCapture
# The settings live in a module without torch (the workflow and every command parser read them); imported here too,
# where library code and tests have always found them.
from diffact.extract.settings import INVERSIONS, KEY_STABLE_DEFAULTS, ExtractionSettings  # noqa: F401
from diffact.families.registry import denoiser_of, family_of
from diffact.models.loading import scaled_latents
from diffact.utils.errors import ConfigError
from diffact.utils.seeding import torch_generator

log = logging.getLogger(__name__)


def is_flow_matching(scheduler) -> bool:
    """Flow-matching schedulers (SD3, Flux) noise with ``scale_noise``, not ``add_noise``."""
    return hasattr(scheduler, "scale_noise")


def grid_timestep(scheduler, t: int, **set_timesteps_kwargs) -> int | float:
    """The timestep the paper's code actually uses for ``t`` (docs/paper.md §2.1 step 1).

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


def inversion_timesteps(target: int, steps: int) -> list[int]:
    """The DDIM inversion path 0 = t_0 < t_1 < … < t_K = target on the 1000-step grid: t_k = ⌊k·target/K⌋."""
    if not 1 <= steps <= target:
        raise ConfigError(f"extraction.inversion_steps={steps}: need 1 ≤ steps ≤ the grid timestep {target} "
                          "(each step must move to a later timestep)")
    return [k * target // steps for k in range(steps + 1)]


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
    # Drop the pipeline's text encoders once the prompt is encoded (the caller's pipeline loses them: for commands
    # that own their pipeline, e.g. `diffact extract`; see diffact.models.loading.release_text_encoders).
    release_text_encoders: bool = False

    def __post_init__(self):
        self.unet = denoiser_of(self.pipe)  # the denoiser: pipe.unet, or pipe.transformer for a DiT
        self.family = family_of(self.unet)
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
        if self.release_text_encoders:
            from diffact.models.loading import release_text_encoders

            release_text_encoders(self.pipe)
        self.inversion_timesteps: list[int] | None = None
        if self.settings.inversion == "ddim":
            self._check_invertible()
            self.inversion_timesteps = inversion_timesteps(int(self.timestep), self.settings.inversion_steps)
        log.info("extracting %d activations at t=%d (grid timestep %s)%s", len(self.layer_names), self.settings.t,
                 self.timestep, f", DDIM-inverted along {self.inversion_timesteps}" if self.inversion_timesteps else "")

    def recipe(self) -> dict:
        """Every extraction option plus what they resolved to on this model (for the store's metadata)."""
        return {**self.settings.as_dict(), "grid_timestep": self.timestep,
                "inversion_timesteps": self.inversion_timesteps,
                "model_dtype": str(self.dtype).removeprefix("torch.")}  # what `dtype: auto` resolved to

    def _timestep_shift(self) -> dict:
        return self.family.timestep_shift(self.pipe, self.scheduler, self.settings.image_size)

    # ---- conditioning ----------------------------------------------------------------------------
    @torch.no_grad()
    def _encode_prompt(self, prompt: str) -> dict:
        return self.family.encode_prompt(self.pipe, self.unet, prompt, self.settings.image_size, self.device)

    def _batched_cond(self, batch: int) -> dict:
        """The prompt conditioning repeated over the batch."""
        return self.family.batched_cond(self._text, batch)

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
        return scaled_latents(vae, latents).to(self.dtype)  # SD3 / Flux VAEs: (z − shift) · scale

    def _forward(self, model_in: torch.Tensor, timestep: int | float, cond: dict):
        """A zero-argument call of the denoiser on ``model_in`` at ``timestep`` (grid value), as its family calls it."""
        batch = model_in.shape[0]
        if self.flow:
            t = torch.full((batch,), timestep, dtype=self.scheduler.timesteps.dtype, device=self.device)
        else:
            t = torch.full((batch,), timestep, dtype=torch.long, device=self.device)
        return self.family.forward(self.pipe, self.unet, model_in, t, cond)

    def _noised(self, latents: torch.Tensor, image_ids: Sequence[str], draw: int) -> torch.Tensor:
        """The model input at the grid timestep: x_0 forward-noised with seeded Gaussian noise."""
        noise = torch.stack([torch.randn(latents.shape[1:], generator=torch_generator(self.settings.noise_seed, "noise", i, draw))
                             for i in image_ids]).to(latents)
        batch = latents.shape[0]
        if self.flow:  # x_t = σ·noise + (1−σ)·x_0 at the grid timestep σ·1000
            t = torch.full((batch,), self.timestep, dtype=self.scheduler.timesteps.dtype, device=self.device)
            return self.scheduler.scale_noise(latents, t, noise)
        t = torch.full((batch,), self.timestep, dtype=torch.long, device=self.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        return self.scheduler.scale_model_input(noisy, self.timestep)

    # ---- DDIM inversion (module docstring) -----------------------------------------------------
    def _check_invertible(self) -> None:
        if self.flow or not hasattr(self.scheduler, "alphas_cumprod"):
            kind = "a flow-matching scheduler" if self.flow else "a scheduler without alphas_cumprod"
            raise ConfigError(f"extraction.inversion: ddim needs a noise-prediction scheduler with an ᾱ schedule; "
                              f"this {self.family.name} model has {kind} ({type(self.scheduler).__name__})")
        prediction = self.scheduler.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise ConfigError("extraction.inversion: ddim supports epsilon and v_prediction models, "
                              f"not {prediction!r}")

    def _alpha_bar(self, timestep: int) -> float:
        """ᾱ at a grid timestep; the clean latent (timestep 0 of the inversion path) has ᾱ = 1."""
        return 1.0 if timestep == 0 else float(self.scheduler.alphas_cumprod[timestep])

    def _predicted_noise(self, output: torch.Tensor, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """ε from the denoiser output: ε directly, or from v = √ᾱ·ε − √(1−ᾱ)·x_0 as ε = √ᾱ·v + √(1−ᾱ)·x_t.
        Models that also predict the variance (PixArt: 2C output channels) give ε as the first C channels."""
        if output.shape[1] == 2 * x.shape[1]:
            output = output[:, : x.shape[1]]
        if self.scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
            return math.sqrt(alpha_bar) * output + math.sqrt(1 - alpha_bar) * x
        return output

    @torch.no_grad()
    def invert(self, latents: torch.Tensor) -> torch.Tensor:
        """x_t from the clean latents by DDIM inversion along :attr:`inversion_timesteps` (the update in fp32:
        fp16 models would round x at every step; mps has no fp64)."""
        cond = self._batched_cond(latents.shape[0])
        x = latents.float()
        path = self.inversion_timesteps
        for here, there in zip(path[:-1], path[1:]):
            output = self._forward(x.to(self.dtype), here, cond)()[0].float()
            alpha_here, alpha_there = self._alpha_bar(here), self._alpha_bar(there)
            eps = self._predicted_noise(output, x, alpha_here)
            clean = (x - math.sqrt(1 - alpha_here) * eps) / math.sqrt(alpha_here)
            x = math.sqrt(alpha_there) * clean + math.sqrt(1 - alpha_there) * eps
        return x.to(self.dtype)

    # ---- the capture pass ------------------------------------------------------------------------
    @torch.no_grad()
    def _capture(self, model_in: torch.Tensor) -> dict[str, torch.Tensor]:
        forward = self._forward(model_in, self.timestep, self._batched_cond(model_in.shape[0]))
        with ActivationCapture(self.unet, self.layer_names, early_exit=self.early_exit) as cap:
            return cap.run(forward)

    def _one_draw(self, latents: torch.Tensor, image_ids: Sequence[str], draw: int) -> dict[str, torch.Tensor]:
        """The features of noise draw ``draw`` (the noise-share analysis calls this per draw)."""
        return self._capture(self._noised(latents, image_ids, draw))

    def __call__(self, images: torch.Tensor, image_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """Features of a batch: name → B×C×h×w float32 CPU tensors, averaged over ``ensemble`` draws."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"expected images B×3×H×W, got {tuple(images.shape)}")
        if len(image_ids) != images.shape[0]:
            raise ConfigError("one image id per image is required (ids seed the noise)")
        latents = self.encode_latents(images, image_ids)
        if self.settings.inversion == "ddim":
            return {n: v.float().cpu() for n, v in self._capture(self.invert(latents)).items()}
        total: dict[str, torch.Tensor] = {}
        for draw in range(self.settings.ensemble):
            feats = self._one_draw(latents, image_ids, draw)
            for name, value in feats.items():
                value = value.float().cpu()
                total[name] = value if draw == 0 else total[name] + value
        return {n: v / self.settings.ensemble for n, v in total.items()}
