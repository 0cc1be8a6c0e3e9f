"""Train the tiny demo pipelines of :mod:`diffact.models.demo` on CPU, deterministically.

Two stages, as latent diffusion itself is trained:

1. the VAE, as an autoencoder: L1 + L2 reconstruction plus a small KL term towards N(0, I);
   afterwards its ``scaling_factor`` is set to 1/std of the latents (the rule SD's 0.18215 came from),
   so that scaled latents have unit variance, as the noise schedule assumes (sd3 also sets SD3's
   ``shift_factor`` to their mean, so (z − shift)·scale has mean 0 too);
2. the denoiser (:func:`train_denoiser`), with the frozen text encoders' embedding c of one fixed prompt as
   condition, computed by the pipeline's own ``encode_prompt`` exactly as the feature extractor feeds it later:

   * a U-Net (sd15, sdxl; :func:`train_unet`): the standard epsilon-prediction DDPM loss
     ``‖ε − ε_θ(√ᾱ_t·z₀ + √(1−ᾱ_t)·ε, t, c)‖²`` at uniformly drawn t ∈ [0, 1000) on the model's own
     scaled_linear schedule (SDXL also gets its pooled embedding and the size ids (H, W, 0, 0, H, W), docs/paper.md §2.1);
   * a diffusion transformer (sd3; :func:`train_dit`): SD3's rectified-flow loss
     ``‖(ε − z₀) − v_θ((1−σ)·z₀ + σ·ε, 1000σ, c)‖²`` with σ logit-normal through the scheduler's shifted
     schedule (Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
     ICML 2024, §2 and §3.1; diffusers' examples/dreambooth/train_dreambooth_sd3.py).

The data are random ``image_size`` crops (with horizontal flips) of the images shipped in
scikit-image (:mod:`diffact.data.shipped`), shrunk first so that a crop sees a good part of the scene.
Every random draw comes from a generator seeded from (seed, purpose), so the same settings give
byte-identical weights for the same thread count (pinned to 2 by default) and CPU kernel family.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from diffact.utils.errors import ConfigError

if TYPE_CHECKING:  # annotations only; torch is imported inside the functions (a cheap CLI start)
    import torch

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "component", "loss")
# Components of the loss CSV, in the order they are trained.
VAE_COMPONENTS = ("vae_recon", "vae_kl", "vae_total")
UNET_COMPONENTS = ("unet_mse",)
DIT_COMPONENTS = ("dit_flow_mse",)


LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class DemoTrainSettings:
    """Demo-model training settings (config/config.yaml ``demo_models``). On the default 1 thread a whole build
    costs sd15 212, sdxl 285, sd3 333 CPU-seconds (measured 2026-12-07, the three side by side on a loaded 2-core
    machine; VAE + calibration ~15%, the denoiser the rest). sd3 since then: 209 CPU-seconds, held-out scoring
    included (user + system, ``/usr/bin/time``, beside other jobs), with 77 instead of 256 zero T5 tokens
    (``families.sd3.T5_TOKENS``): a DiT step at batch 16 costs 1.10 instead of 2.01 CPU s (0.55x, both lengths in
    one process, 5 steps each after a warm-up), the joint attention running over 410 tokens instead of 589. A U-Net step on 2 threads costs 1.28× the CPU time of 1
    (``benchmarks/bench_demo_training.py``), for little gain in wall time at these widths, so the workflow trains
    the models side by side, one core each. Their loss curves match the 2-thread ones within 0.2% at every step."""

    image_size: int = 64  # training crop size in pixels; latents are image_size / 2
    batch_size: int = 16
    vae_steps: int = 60
    unet_steps: int = 150  # denoiser steps: the U-Net's, or sd3's transformer's
    lr: float = 1e-3  # AdamW, both stages (the denoiser's peak when unet_lr is None)
    # The denoiser's learning-rate schedule (the VAE's is always constant at lr): its peak (None: lr), the steps of
    # linear warm-up to it (step s of w gets s/w of the peak), then constant or a cosine decay to 0 at the last
    # step (:func:`lr_factor`). constant, 0 warm-up and unet_lr None are the models of before the schedule, bit
    # for bit.
    unet_lr: float | None = None
    unet_batch_size: int | None = None  # the denoiser's crops per step (None: batch_size, the VAE's)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    seed: int = 0
    prompt: str = "a photo"  # the fixed training prompt; the default extraction prompt too
    kl_weight: float = 1e-3  # per latent element; small: reconstruction matters, KL only keeps latents tame
    grad_clip: float = 1.0  # gradient-norm clip: lr 1e-3 from scratch is aggressive
    context_scale: float = 2.0  # images are shrunk so their short side is context_scale × image_size
    # torch intra-op threads while training. Pinned because CPU kernels split reductions by thread,
    # so another thread count gives (slightly) different bits. 1 (config demo_models.threads; 2 before
    # 2026-12-07): at these widths a second thread saves little wall time and costs 1.3-1.5x the CPU time
    # (U-Net step, batch 16: sd15 1.09 -> 1.41, sdxl 1.55 -> 2.36 CPU s, one session, loaded 2-core machine),
    # so the workflow trains the three models side by side, one core each. None leaves torch's default.
    num_threads: int | None = 1

    def validate(self) -> "DemoTrainSettings":
        # latents are image_size / 2 and the sd15 U-Net halves them 3 times
        if self.image_size < 16 or self.image_size % 16:
            raise ConfigError(f"image_size must be a positive multiple of 16, got {self.image_size}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.unet_batch_size is not None and self.unet_batch_size < 1:
            raise ConfigError(f"unet_batch_size must be >= 1, got {self.unet_batch_size}")
        for name in ("vae_steps", "unet_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.unet_lr is not None and not self.unet_lr > 0:
            raise ConfigError(f"unet_lr must be > 0, got {self.unet_lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.warmup_steps <= self.unet_steps:
            raise ConfigError(f"warmup_steps must be between 0 and unet_steps ({self.unet_steps}), "
                              f"got {self.warmup_steps}")
        if self.context_scale < 1:
            raise ConfigError(f"context_scale must be >= 1, got {self.context_scale}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {self.num_threads}")
        return self

    @property
    def denoiser_batch(self) -> int:
        """The denoiser's crops per step."""
        return self.batch_size if self.unet_batch_size is None else self.unet_batch_size

    @property
    def denoiser_lr(self) -> float:
        """The denoiser's peak learning rate."""
        return self.lr if self.unet_lr is None else self.unet_lr


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant") -> float:
    """The fraction of the peak learning rate at ``step`` (1-based) of ``total``: ``step / warmup`` during the
    warm-up, then 1 (constant) or the cosine ½(1 + cos(π·k/n)) over the n = total − warmup steps after it, k = 1..n
    (so the last step's rate is 0 and the first one after the warm-up is just below the peak)."""
    import math

    if step <= warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    decay_steps = total - warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / decay_steps))


# ---------------------------------------------------------------------------------------------------
# Determinism


@contextlib.contextmanager
def deterministic_torch(num_threads: int | None = None) -> Iterator[None]:
    """Run the block with deterministic torch kernels (and optionally a fixed thread count), then
    restore the caller's settings. CPU kernels are deterministic for a fixed thread count; the flag
    makes torch refuse the few that are not rather than silently vary."""
    import torch

    previous_flag = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_flag, warn_only=previous_warn)
        torch.set_num_threads(previous_threads)


# ---------------------------------------------------------------------------------------------------
# Data


def load_training_images(image_size: int = 64, context_scale: float = 2.0) -> list:
    """The shipped images as float tensors (3, H, W) in [-1, 1], shrunk (anti-aliased) so the short side
    is ``context_scale × image_size``: a 64-px crop of a 512-px photo would be a texture patch, of a
    128-px version a recognisable part of the scene. Images already that small are kept as they are."""
    import numpy as np
    import torch
    from skimage.transform import resize

    from diffact.data.shipped import available_shipped_images, shipped_image

    names = available_shipped_images()
    if not names:
        raise ConfigError("no shipped images available to train the demo models")
    target = max(image_size, round(context_scale * image_size))
    images = []
    for name in names:
        img = shipped_image(name).astype(np.float32) / 255.0
        scale = target / min(img.shape[:2])
        if scale < 1:
            shape = (max(image_size, round(img.shape[0] * scale)), max(image_size, round(img.shape[1] * scale)))
            img = resize(img, shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
        if min(img.shape[:2]) < image_size:
            continue  # too small to crop (none of the shipped images is)
        images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) * 2 - 1)
    log.info("training images: %d shipped images, short side %d px", len(images), target)
    return images


def sample_crops(images: list, batch_size: int, image_size: int, generator) -> "torch.Tensor":
    """A batch (B, 3, S, S) of random S-px crops, each flipped left-right with probability 1/2."""
    import torch

    crops = []
    for _ in range(batch_size):
        img = images[int(torch.randint(len(images), (1,), generator=generator))]
        top = int(torch.randint(img.shape[1] - image_size + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[2] - image_size + 1, (1,), generator=generator))
        crop = img[:, top : top + image_size, left : left + image_size]
        if bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops)


# ---------------------------------------------------------------------------------------------------
# Stage 1: VAE


def train_vae(vae, images: list, settings: DemoTrainSettings, progress: bool = True) -> list[dict]:
    """Train ``vae`` in place for ``settings.vae_steps`` AdamW steps; returns loss rows.

    loss = |x̂ − x|₁ + |x̂ − x|₂² (means over pixels) + kl_weight · KL(q(z|x) ‖ N(0, I)) per latent element,
    with x̂ decoded from a posterior *sample* (the reparameterisation trick).
    """
    import torch
    from tqdm.auto import tqdm

    from diffact.utils.seeding import torch_generator

    data_gen = torch_generator(settings.seed, "vae", "crops")
    noise_gen = torch_generator(settings.seed, "vae", "posterior")
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.lr, foreach=True)  # see _optimise
    rows: list[dict] = []
    bar = tqdm(range(1, settings.vae_steps + 1), desc="train VAE", disable=not progress, leave=False)
    for step in bar:
        x = sample_crops(images, settings.batch_size, settings.image_size, data_gen)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=noise_gen)
        recon = vae.decode(z).sample
        recon_loss = (recon - x).abs().mean() + (recon - x).pow(2).mean()
        kl_loss = posterior.kl().mean() / z[0].numel()
        loss = recon_loss + settings.kl_weight * kl_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), settings.grad_clip, foreach=True)
        optimizer.step()
        values = dict(zip(VAE_COMPONENTS, (recon_loss.item(), kl_loss.item(), loss.item())))
        rows += [{"step": step, "component": component, "loss": value} for component, value in values.items()]
        bar.set_postfix(recon=f"{values['vae_recon']:.4f}")
        if step == 1 or step % 20 == 0 or step == settings.vae_steps:
            log.info("VAE step %d/%d: recon %.4f, kl %.3f", step, settings.vae_steps, values["vae_recon"], values["vae_kl"])
    vae.eval().requires_grad_(False)
    return rows


def calibrate_latent_scale(vae, images: list, settings: DemoTrainSettings, num_crops: int = 64) -> float:
    """Set ``vae.config.scaling_factor`` to 1/std of posterior-sampled latents of ``num_crops`` random
    crops (LDM's rule; SD's 0.18215 is this number for its VAE), so that the diffusion model sees
    unit-variance latents whatever the VAE learnt. Returns the factor.

    A VAE with a ``shift_factor`` (SD3's: latents are (z − shift)·scale; SD3-medium's is 0.0609, the demo sd3's
    starts at a placeholder 0.0) also gets its shift set, to the mean of the same latents, so the flow starts
    from zero-mean unit-variance latents. A VAE whose shift_factor is None (sd15, sdxl) keeps it None."""
    import torch

    from diffact.utils.seeding import torch_generator

    data_gen = torch_generator(settings.seed, "calibrate", "crops")
    noise_gen = torch_generator(settings.seed, "calibrate", "posterior")
    with torch.no_grad():
        x = sample_crops(images, num_crops, settings.image_size, data_gen)
        z = vae.encode(x).latent_dist.sample(generator=noise_gen)
    # Round so the JSON config (and hence the saved folder) is stable under float printing.
    factor = float(f"{1.0 / float(z.std()):.5g}")
    if vae.config.get("shift_factor") is None:
        vae.register_to_config(scaling_factor=factor)
        log.info("VAE latent std %.4f -> scaling_factor %.5g", float(z.std()), factor)
        return factor
    shift = float(f"{float(z.mean()):.5g}")
    vae.register_to_config(scaling_factor=factor, shift_factor=shift)
    log.info("VAE latent mean %.4f, std %.4f -> shift_factor %.5g, scaling_factor %.5g",
             float(z.mean()), float(z.std()), shift, factor)
    return factor


# ---------------------------------------------------------------------------------------------------
# Stage 2: the denoiser (U-Net or diffusion transformer)


def text_conditioning(pipe, prompt: str, image_size: int) -> dict:
    """The denoiser's conditioning for one prompt, batch 1: what its family feeds it at extraction
    (:meth:`diffact.families.base.Family.encode_prompt`, the pipeline's own ``encode_prompt``), so training
    matches extraction by construction. ``encoder_hidden_states`` (1, 77, 32) for sd15 / (1, 77, 64) for sdxl,
    and for sdxl ``added_cond_kwargs`` = pooled ``text_embeds`` (1, 32) and ``time_ids`` (1, 6) =
    (H, W, 0, 0, H, W) with H = W = image_size (docs/paper.md §2.1). sd3: ``encoder_hidden_states`` (1, 154, 64) =
    77 CLIP-L ⊕ CLIP-G tokens + 77 zero tokens in place of T5 (``max_sequence_length`` =
    :data:`diffact.families.sd3.T5_TOKENS`, SD3's training length) and ``pooled_projections`` (1, 64)."""
    import torch

    from diffact.families.registry import denoiser_of, family_of

    model = denoiser_of(pipe)
    with torch.no_grad():
        return family_of(model).encode_prompt(pipe, model, prompt, image_size, "cpu")


def expand_conditioning(pipe, cond: dict, batch_size: int) -> dict:
    """Repeat a batch-1 conditioning dict to ``batch_size`` along dim 0, as the extractor does
    (:meth:`diffact.families.base.Family.batched_cond`)."""
    from diffact.families.registry import denoiser_of, family_of

    return family_of(denoiser_of(pipe)).batched_cond(cond, batch_size)


def is_dit(pipe) -> bool:
    """A pipeline whose denoiser is a transformer (the demo's sd3), as its family says."""
    from diffact.families.registry import denoiser_of, family_of

    return family_of(denoiser_of(pipe)).denoiser_attr == "transformer"


def train_denoiser(pipe, images: list, settings: DemoTrainSettings, progress: bool = True) -> list[dict]:
    """Train the pipeline's denoiser for ``settings.unet_steps`` steps: :func:`train_dit` (flow matching) for a
    transformer, :func:`train_unet` (epsilon prediction) for a U-Net. Returns loss rows."""
    return (train_dit if is_dit(pipe) else train_unet)(pipe, images, settings, progress)


def _optimise(model, settings: DemoTrainSettings, step_loss, what: str, component: str, metric: str,
              progress: bool) -> list[dict]:
    """The AdamW loop both denoisers share: ``settings.unet_steps`` steps of ``step_loss()`` (which draws its
    own batch from its seeded generators), gradient clipping, one loss row per step; ``model`` trained in place."""
    import torch
    from tqdm.auto import tqdm

    model.train().requires_grad_(True)
    peak = settings.denoiser_lr
    # foreach: the multi-tensor kernels, same bits as the per-parameter loop torch picks on CPU by default
    # (tests/test_demo_schedule.py), 6 of 32 ms less per step for clipping + AdamW on the sd15 U-Net
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, foreach=True)
    rows: list[dict] = []
    bar = tqdm(range(1, settings.unet_steps + 1), desc=f"train {what}", disable=not progress, leave=False)
    for step in bar:
        loss = step_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
        for group in optimizer.param_groups:
            group["lr"] = peak * lr_factor(step, settings.unet_steps, settings.warmup_steps, settings.lr_schedule)
        optimizer.step()
        value = loss.item()
        rows.append({"step": step, "component": component, "loss": value})
        bar.set_postfix(mse=f"{value:.4f}")
        if step == 1 or step % 25 == 0 or step == settings.unet_steps:
            log.info("%s step %d/%d: %s %.4f", what, step, settings.unet_steps, metric, value)
    model.eval().requires_grad_(False)
    return rows


def train_unet(pipe, images: list, settings: DemoTrainSettings, progress: bool = True) -> list[dict]:
    """Train ``pipe.unet`` in place for ``settings.unet_steps`` AdamW steps (VAE, text encoders frozen);
    returns loss rows. Latents z₀ = VAE posterior sample × scaling_factor, (B, 4, S/2, S/2)."""
    import torch
    import torch.nn.functional as F

    from diffact.models.loading import scaled_latents
    from diffact.utils.seeding import torch_generator

    vae, unet = pipe.vae, pipe.unet
    cond = expand_conditioning(pipe, text_conditioning(pipe, settings.prompt, settings.image_size),
                               settings.denoiser_batch)
    alphas_cumprod = pipe.scheduler.alphas_cumprod.to(torch.float32)  # ᾱ_t of the scaled_linear schedule
    num_train_timesteps = len(alphas_cumprod)
    data_gen = torch_generator(settings.seed, "unet", "crops")
    latent_gen = torch_generator(settings.seed, "unet", "posterior")
    noise_gen = torch_generator(settings.seed, "unet", "noise")

    def step_loss():
        x = sample_crops(images, settings.denoiser_batch, settings.image_size, data_gen)
        with torch.no_grad():
            z0 = scaled_latents(vae, vae.encode(x).latent_dist.sample(generator=latent_gen))
        t = torch.randint(num_train_timesteps, (settings.denoiser_batch,), generator=noise_gen)
        eps = torch.randn(z0.shape, generator=noise_gen)
        abar = alphas_cumprod[t].view(-1, 1, 1, 1)
        zt = abar.sqrt() * z0 + (1 - abar).sqrt() * eps
        return F.mse_loss(unet(zt, t, **cond).sample, eps)

    return _optimise(unet, settings, step_loss, "U-Net", "unet_mse", "mse", progress)


def flow_sigmas(scheduler, batch_size: int, generator) -> tuple:
    """(timesteps, σ) of a training batch, as SD3 draws them: u ~ logit-normal(0, 1) (sigmoid of N(0, 1); Esser
    et al. 2024 §3.1, "rf/lognorm(0.00, 1.00)", their best sampler in §5.1), then entry ⌊1000·u⌋ of the
    scheduler's 1000-step training schedule, which runs from σ = 1 down and applies SD3's timestep shift
    σ = αs/(1 + (α−1)s), α = 3.0 (§5.3.2, resolution-dependent shifting), to s = 1 − ⌊1000·u⌋/1000 (distributed
    as u: the logit-normal is symmetric about 1/2). This is diffusers' train_dreambooth_sd3.py (weighting_scheme
    logit_normal, logit_mean 0, logit_std 1; training_utils.compute_density_for_timestep_sampling), seeded.
    Timesteps are σ·1000 floats, as the extractor feeds them."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    # the schedule as constructed (a pipeline's scheduler may have been set_timesteps'd to another length)
    schedule = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    n = schedule.config.num_train_timesteps
    u = torch.sigmoid(torch.randn(batch_size, generator=generator))
    index = (u * n).long().clamp(max=n - 1)
    return schedule.timesteps[index].to(torch.float32), schedule.sigmas[index].to(torch.float32)


def train_dit(pipe, images: list, settings: DemoTrainSettings, progress: bool = True) -> list[dict]:
    """Train ``pipe.transformer`` in place for ``settings.unet_steps`` AdamW steps (VAE, text encoders frozen)
    with SD3's rectified-flow objective (Esser et al. 2024, §2 and §3.1: z_t = (1−σ)·z₀ + σ·ε, the network
    predicts the velocity v = ε − z₀; unweighted MSE, as train_dreambooth_sd3.py with ``--precondition_outputs 0``
    and logit-normal sampling, whose loss weight is 1). σ from :func:`flow_sigmas`; latents z₀ = (VAE posterior
    sample − shift_factor) × scaling_factor, (B, 4, S/2, S/2). Returns loss rows (component ``dit_flow_mse``)."""
    import torch
    import torch.nn.functional as F

    from diffact.models.loading import scaled_latents
    from diffact.utils.seeding import torch_generator

    vae, model = pipe.vae, pipe.transformer
    cond = expand_conditioning(pipe, text_conditioning(pipe, settings.prompt, settings.image_size),
                               settings.denoiser_batch)
    data_gen = torch_generator(settings.seed, "dit", "crops")
    latent_gen = torch_generator(settings.seed, "dit", "posterior")
    sigma_gen = torch_generator(settings.seed, "dit", "sigma")
    noise_gen = torch_generator(settings.seed, "dit", "noise")

    def step_loss():
        x = sample_crops(images, settings.denoiser_batch, settings.image_size, data_gen)
        with torch.no_grad():
            z0 = scaled_latents(vae, vae.encode(x).latent_dist.sample(generator=latent_gen))
        timesteps, sigmas = flow_sigmas(pipe.scheduler, settings.denoiser_batch, sigma_gen)
        eps = torch.randn(z0.shape, generator=noise_gen)
        sigma = sigmas.view(-1, 1, 1, 1)
        zt = (1 - sigma) * z0 + sigma * eps
        pred = model(hidden_states=zt, timestep=timesteps, return_dict=False, **cond)[0]
        return F.mse_loss(pred, eps - z0)

    return _optimise(model, settings, step_loss, "DiT", "dit_flow_mse", "flow mse", progress)


def check_dit_image_size(pipe, image_size: int) -> None:
    """A transformer's patch grid at ``image_size`` must fit its positional embedding (diffusers raises
    deep inside the forward pass otherwise)."""
    from diffact.models.demo import VAE_DOWNSAMPLING_FACTOR

    config = pipe.transformer.config
    grid = image_size // VAE_DOWNSAMPLING_FACTOR // config.patch_size
    if config.pos_embed_max_size is not None and grid > config.pos_embed_max_size:
        largest = config.pos_embed_max_size * config.patch_size * VAE_DOWNSAMPLING_FACTOR
        raise ConfigError(f"image_size {image_size} gives a {grid}×{grid} token grid, more than the transformer's "
                          f"pos_embed_max_size {config.pos_embed_max_size} (at most {largest} px)")


# ---------------------------------------------------------------------------------------------------
# Held-out denoising loss: one number to compare trained models by

HELDOUT_COLUMNS = ("grid_point", "timestep", "sigma", "loss")


def heldout_grid(pipe, points: int) -> tuple:
    """(timesteps, σ or None) of the held-out grid: for a U-Net the midpoints t_k = ⌊(k + ½)·T/points⌋ of the T
    training timesteps (training draws t uniformly); for a DiT the σ of :func:`flow_sigmas` at the logit-normal's
    quantiles (k + ½)/points (training draws u from it), through the same shifted schedule. Each point stands for
    an equal share of the training distribution, so the mean over the grid estimates the training objective."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    quantiles = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    if not is_dit(pipe):
        num_train_timesteps = len(pipe.scheduler.alphas_cumprod)
        return (quantiles * num_train_timesteps).long(), None
    schedule = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    n = schedule.config.num_train_timesteps
    u = torch.sigmoid(torch.special.ndtri(quantiles)).to(torch.float32)
    index = (u * n).long().clamp(max=n - 1)
    return schedule.timesteps[index].to(torch.float32), schedule.sigmas[index].to(torch.float32)


def heldout_loss(pipe, settings: DemoTrainSettings = DemoTrainSettings(), crops: int = 32, points: int = 8,
                 batch_size: int = 16) -> list[dict]:
    """The denoiser's training loss (ε-MSE for a U-Net, flow MSE for a DiT) on fixed data: ``crops`` crops of the
    training images, their VAE posterior samples, and one noise tensor per (crop, grid point), all drawn from
    generators seeded by (settings.seed, "heldout", ...) that no training step uses, at each point of
    :func:`heldout_grid`. Unlike the training curve (a new batch and new t per step) the same model always gets
    the same number, and two models are compared on the same draws. Returns one row per grid point (its timestep,
    σ for a DiT, mean loss); their mean is the held-out loss (:func:`mean_heldout_loss`)."""
    import torch
    import torch.nn.functional as F

    from diffact.families.registry import denoiser_of
    from diffact.models.loading import scaled_latents
    from diffact.utils.seeding import torch_generator

    dit = is_dit(pipe)
    model = denoiser_of(pipe)
    images = load_training_images(settings.image_size, settings.context_scale)
    with deterministic_torch(settings.num_threads), torch.no_grad():
        x = sample_crops(images, crops, settings.image_size, torch_generator(settings.seed, "heldout", "crops"))
        posterior_gen = torch_generator(settings.seed, "heldout", "posterior")
        z0 = torch.cat([scaled_latents(pipe.vae, pipe.vae.encode(part).latent_dist.sample(generator=posterior_gen))
                        for part in x.split(batch_size)])
        timesteps, sigmas = heldout_grid(pipe, points)
        noise = torch.randn((points, *z0.shape), generator=torch_generator(settings.seed, "heldout", "noise"))
        prompt_cond = text_conditioning(pipe, settings.prompt, settings.image_size)
        alphas_cumprod = None if dit else pipe.scheduler.alphas_cumprod.to(torch.float32)
        rows = []
        for k in range(points):
            total = 0.0
            for start in range(0, crops, batch_size):
                z, eps = z0[start : start + batch_size], noise[k, start : start + batch_size]
                part_cond = expand_conditioning(pipe, prompt_cond, len(z))
                t = timesteps[k].expand(len(z))
                if dit:
                    sigma = sigmas[k]
                    pred = model(hidden_states=(1 - sigma) * z + sigma * eps, timestep=t, return_dict=False,
                                 **part_cond)[0]
                    target = eps - z
                else:
                    abar = alphas_cumprod[timesteps[k]]
                    pred = model(abar.sqrt() * z + (1 - abar).sqrt() * eps, t, **part_cond).sample
                    target = eps
                total += F.mse_loss(pred, target, reduction="sum").item()
            rows.append({"grid_point": k, "timestep": float(timesteps[k]),
                         "sigma": None if sigmas is None else float(sigmas[k]), "loss": total / noise[k].numel()})
    return rows


def write_heldout_csv(path: str | Path, rows: list[dict]) -> None:
    """The held-out rows as CSV (:data:`HELDOUT_COLUMNS`), atomically."""
    import pandas as pd

    from diffact.utils.io import write_csv

    write_csv(path, pd.DataFrame(rows, columns=list(HELDOUT_COLUMNS)))


def mean_heldout_loss(rows: list[dict]) -> float:
    """The held-out loss: the mean of :func:`heldout_loss`'s grid points (equal numbers of elements each)."""
    return sum(row["loss"] for row in rows) / len(rows)


# ---------------------------------------------------------------------------------------------------
# Whole pipeline


def train_demo_pipeline(arch: str, settings: DemoTrainSettings = DemoTrainSettings(), progress: bool = True):
    """Build the seeded random pipeline of ``arch`` (:func:`diffact.models.demo.random_init_pipeline`),
    train VAE then the denoiser (U-Net or transformer, :func:`train_denoiser`), calibrate the latent scale in
    between. Returns (pipeline, loss DataFrame with columns step, component, loss)."""
    import pandas as pd

    from diffact.models.demo import random_init_pipeline
    from diffact.models.loading import TEXT_ENCODERS

    settings = settings.validate()
    with deterministic_torch(settings.num_threads):
        images = load_training_images(settings.image_size, settings.context_scale)
        pipe = random_init_pipeline(arch, settings.seed)
        if is_dit(pipe):
            check_dit_image_size(pipe, settings.image_size)
        for name in TEXT_ENCODERS:
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).requires_grad_(False)
        started = time.perf_counter()
        rows = train_vae(pipe.vae, images, settings, progress)
        vae_seconds = time.perf_counter() - started
        calibrate_latent_scale(pipe.vae, images, settings)
        started = time.perf_counter()
        rows += train_denoiser(pipe, images, settings, progress)
        log.info(
            "%s trained: VAE %d steps in %.1f s, %s %d steps in %.1f s", arch, settings.vae_steps, vae_seconds,
            "DiT" if is_dit(pipe) else "U-Net", settings.unet_steps, time.perf_counter() - started,
        )
    return pipe, pd.DataFrame(rows, columns=list(LOSS_COLUMNS))


def untrained_demo_pipeline(arch: str, settings: DemoTrainSettings = DemoTrainSettings()):
    """The "random weights" reference: the seeded random pipeline, with only the VAE latent scale
    calibrated (on the same crops as a trained model), so its latents have unit variance too."""
    from diffact.models.demo import random_init_pipeline

    settings = settings.validate()
    with deterministic_torch(settings.num_threads):
        pipe = random_init_pipeline(arch, settings.seed)
        calibrate_latent_scale(pipe.vae, load_training_images(settings.image_size, settings.context_scale), settings)
    return pipe


def save_loss_curve(losses, csv_path: str | Path | None = None, png_path: str | Path | None = None,
                    dit: bool | None = None) -> None:
    """Write the loss table (step, component, loss) as CSV and a log-scale plot, one panel per stage. The
    second panel is the DiT's flow-matching loss when ``dit`` (default: when the table has its component),
    else the U-Net's."""
    from diffact.utils.io import save_figure, write_csv

    if csv_path is not None:
        write_csv(csv_path, losses)
    if png_path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if dit is None:
        dit = bool(losses["component"].isin(DIT_COMPONENTS).any())
    denoiser_panel = (("DiT (flow-matching MSE)", DIT_COMPONENTS) if dit
                      else ("U-Net (ε-prediction MSE)", UNET_COMPONENTS))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (title, components) in zip(axes, (("VAE", VAE_COMPONENTS), denoiser_panel)):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        shown = False
        for component in components:
            part = losses[losses["component"] == component]
            if len(part) and (part["loss"] > 0).all():
                # the total is the reconstruction plus a tiny weighted KL: dashed, or it hides the former
                style = "--" if component.endswith("_total") else "-"
                ax.plot(part["step"], part["loss"], style, label=component, lw=1)
                shown = True
        if shown:
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not trained", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=120)
    plt.close(fig)


def build_demo_model(
    arch: str,
    out: str | Path,
    settings: DemoTrainSettings = DemoTrainSettings(),
    untrained: bool = False,
    loss_csv: str | Path | None = None,
    loss_png: str | Path | None = None,
    heldout_csv: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train (or, ``untrained``, only build) the demo pipeline of ``arch`` and save it atomically as a
    diffusers folder at ``out``; write the loss curve if paths are given (an untrained model gets an
    empty table and a "not trained" plot, so workflow rules can treat both alike). Returns ``out``."""
    import pandas as pd

    from diffact.models.demo import is_dit as is_dit_arch
    from diffact.models.demo import save_pipeline

    dit = is_dit_arch(arch)  # checks arch
    started = time.perf_counter()
    if untrained:
        pipe, losses = untrained_demo_pipeline(arch, settings), pd.DataFrame(columns=list(LOSS_COLUMNS))
    else:
        pipe, losses = train_demo_pipeline(arch, settings, progress)
    save_pipeline(pipe, out)
    save_loss_curve(losses, loss_csv, loss_png, dit=dit)
    # Only when asked: it costs 6-11 CPU s a model (the workflow's builds leave it out; diffact demo-heldout-loss
    # scores a saved folder). After saving: the evaluation draws nothing the saved weights depend on.
    if heldout_csv is not None and not untrained:
        heldout = heldout_loss(pipe, settings)
        log.info("%s held-out loss %.5f (grid: %s)", arch, mean_heldout_loss(heldout),
                 ", ".join(f"{row['loss']:.4f}" for row in heldout))
        write_heldout_csv(heldout_csv, heldout)
    log.info(
        "built %s demo model (%s) at %s in %.1f s; settings %s",
        arch, "untrained" if untrained else "trained", out, time.perf_counter() - started, asdict(settings),
    )
    return Path(out)

