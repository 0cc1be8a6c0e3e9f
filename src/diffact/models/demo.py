"""Tiny latent-diffusion pipelines with the block layouts of Stable Diffusion 1.5, SDXL and SD3-medium.

The paper studies SD1.5 and SDXL (docs/paper.md §2.3). The demo profile cannot download them, so it builds
miniature versions from hand-written configs: the *same* diffusers classes, block types, block
counts and pipeline classes, so every activation name of the paper's naming scheme (docs/paper.md §2.2,
e.g. ``up-level1-repeat2-res-out`` or ``up-level0-repeat0-vit-block3-out``) exists, but with
channel widths of 16–64 instead of 320–1280 so that they train on a laptop CPU in minutes. ``sd3`` does
the same for a diffusion transformer (DiT): SD3-medium's 24 MMDiT blocks (``vit-block0`` … ``vit-block23``)
at width 32 instead of 1536.

Layout at 64-px images (latents 4×32×32, VAE downsampling factor 2 instead of SD's 8):

* ``sd15`` (2.16 M U-Net parameters): 4 levels at 32²/16²/8²/4² with (16, 32, 64, 64) channels
  (SD1.5's 1:2:4:4); down = CrossAttnDownBlock2D ×3 + DownBlock2D, mid = UNetMidBlock2DCrossAttn,
  up = UpBlock2D + CrossAttnUpBlock2D ×3; 2 ResModules per down level and 3 per up level; one basic
  transformer block per ViT (16 ViTs, as SD1.5).
* ``sdxl`` (6.17 M): 3 levels at 32²/16²/8² with (16, 32, 64) channels (SDXL's 1:2:4); down =
  DownBlock2D + CrossAttnDownBlock2D ×2, up = CrossAttnUpBlock2D ×2 + UpBlock2D; 2 basic blocks per
  ViT at level 1 and 10 at level 2 / mid, as SDXL (``transformer_layers_per_block`` (1, 2, 10)), so
  the catalog holds SDXL's 472 candidates and every paper set (Ours-XL names blocks 5 and 7) resolves;
  linear projections; ``text_time`` added conditioning (11 ViTs, as SDXL).
* ``sd3`` (0.91 M transformer parameters): ``StableDiffusion3Pipeline`` with an ``SD3Transformer2DModel`` of
  SD3-medium's layout (``stabilityai/stable-diffusion-3-medium-diffusers`` transformer/config.json, also in
  ``models/hub_configs/sd3-medium``): 24 ``JointTransformerBlock`` s, the last one ``context_pre_only`` (diffusers
  sets that itself), patch size 2, no QK-norm, no dual attention; 2 heads of 16 dims (width 32; SD3-medium: 24
  heads of 64, width 1536). The 4×32² latents become a 16×16 grid of 256 image tokens. Text: CLIP-L and CLIP-G
  are two tiny CLIPs with projection (32 dims each; penultimate hidden states concatenated to 64 = the joint
  attention width, pooled projections concatenated to 64 = ``pooled_projection_dim``), and there is no T5
  (``text_encoder_3=None``): ``StableDiffusion3Pipeline.encode_prompt`` then appends ``max_sequence_length``
  zero tokens, as SD3 run without T5 does; the sd3 family asks for 77 (``families.sd3.T5_TOKENS``, SD3's training
  length, not the inference default 256), so the text sequence is 77 + 77 = 154 tokens. The VAE
  is the demo VAE with SD3's ``shift_factor`` (calibrated with the scale, see train.calibrate_latent_scale), the
  scheduler SD3-medium's ``FlowMatchEulerDiscreteScheduler(shift=3.0)``.

Everything is built from a seed, so a given (arch, seed) always yields the same random weights.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

from diffact.utils.errors import ConfigError
from diffact.utils.seeding import derive_seed

log = logging.getLogger(__name__)

ARCHS: tuple[str, ...] = ("sd15", "sdxl", "sd3")
UNET_ARCHS: tuple[str, ...] = ("sd15", "sdxl")  # denoiser pipe.unet, epsilon prediction
DIT_ARCHS: tuple[str, ...] = ("sd3",)  # denoiser pipe.transformer, flow matching

# Text encoders: CLIP's architecture at toy size. 77 positions as in SD (the tokenizer pads to 77).
TEXT_HIDDEN_SIZE = 32
TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": TEXT_HIDDEN_SIZE,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",  # as openai/clip-vit-large-patch14 (SD1.5's encoder)
    "projection_dim": TEXT_HIDDEN_SIZE,  # SDXL's pooled embedding comes from text_encoder_2's projection
}

# The VAE: two resolution levels, hence one downsampler: 64-px images -> 32×32 latents with 4 channels
# (SD's VAE has four levels and factor 8: 512 px -> 64²). It is only the codec in front of the U-Net,
# whose activations the paper studies, so it is kept very cheap: 16/32 channels and no mid-block
# self-attention (that attention over 32² positions alone cost ~45% of a VAE training step).
# The scaling factor is a placeholder that train.calibrate_latent_scale replaces by 1/std of the
# latents, the rule SD's 0.18215 came from.
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,  # SD's VAE: 32 groups of 4 channels at 128 channels
    "mid_block_add_attention": False,
    "sample_size": 64,
    "scaling_factor": 0.18215,
    # SDXL's VAE overflows in fp16 and is upcast by the pipeline; the tiny one is trained in fp32 and
    # has never been checked in fp16, so ask for the same upcast (a no-op in fp32).
    "force_upcast": True,
}
VAE_DOWNSAMPLING_FACTOR = 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1)
# SD3's VAE normalises latents as (z − shift_factor) · scaling_factor (SD3-medium: 0.0609, 1.5305). The sd3 demo
# VAE starts with shift 0.0, a placeholder that train.calibrate_latent_scale replaces by the latents' mean; the
# U-Net archs keep shift_factor None (no shift), as SD1.5 and SDXL.
SD3_VAE_SHIFT_PLACEHOLDER = 0.0

# Shared by both U-Nets: GroupNorm over 8 groups (SD: 32 groups of 10-40 channels; 32 groups are
# impossible at 16 channels) and 16-dim attention heads everywhere.
UNET_NORM_GROUPS = 8

# SD1.5's U-Net (docs/paper.md §2.3: 320/640/1280/1280 channels, 8 heads, 1 block per ViT) at toy width. The
# 32² level is what CPU training time is spent on (its self-attention over 1024 positions alone is
# ~45% of a step), hence only 16 channels there. ``attention_head_dim`` is diffusers' legacy name for
# the number of heads in SD1.5-style configs: (1, 2, 4, 4) heads = 16 dims each (SD1.5's 8 heads
# would be 2-dim heads here, and made CPU training 3-4× slower).
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (16, 32, 64, 64),
    "layers_per_block": 2,
    "attention_head_dim": (1, 2, 4, 4),
    "cross_attention_dim": TEXT_HIDDEN_SIZE,
    "norm_num_groups": UNET_NORM_GROUPS,
}

# SDXL's U-Net (docs/paper.md §2.3: 320/640/1280 channels, ViTs of 2 blocks at level 1 and 10 at level 2 / mid,
# head dim 64, linear projections, text_time conditioning from the pooled text embedding + 6 size ids).
# SDXL's own block counts: level 0 has no ViT (its entry is unused), 2 blocks per level-1 ViT, 10 per level-2 / mid
# ViT. The 10-block ViTs run at 8² latents with 64 channels: against (1, 2, 4), parameters 3.18 M -> 6.17 M, a
# training step (batch 16, 2 threads) 1.70x and a one-image forward 1.56x the time (measured 2026-12-02, AMD EPYC).
SDXL_TRANSFORMER_LAYERS = (1, 2, 10)
SDXL_TIME_EMBED_DIM = 8  # SDXL: 256 per size id
SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 2,
    "transformer_layers_per_block": SDXL_TRANSFORMER_LAYERS,
    "attention_head_dim": (1, 2, 4),  # heads per level -> 16-dim heads (SDXL: 64-dim)
    "use_linear_projection": True,
    # SDXL concatenates the penultimate hidden states of both text encoders (768 + 1280 = 2048).
    "cross_attention_dim": 2 * TEXT_HIDDEN_SIZE,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": SDXL_TIME_EMBED_DIM,
    # pooled text embedding (text_encoder_2's projection) + 6 time ids (H, W, top, left, H, W)
    "projection_class_embeddings_input_dim": TEXT_ENCODER_CONFIG["projection_dim"] + 6 * SDXL_TIME_EMBED_DIM,
    "norm_num_groups": UNET_NORM_GROUPS,
}

# SD3-medium's transformer (transformer/config.json: 24 layers, 24 heads × 64 = 1536, patch 2, 16 latent channels,
# joint_attention_dim 4096 = T5-XXL's width, pooled_projection_dim 2048 = 768 + 1280, pos_embed_max_size 192 =
# 3 × its 64-token grid side) at toy width. Block count and patch size are SD3-medium's; the width is what CPU
# training time is spent on: 2 heads × 16 at batch 16 take 1.37 s a training step on 2 threads (the sd15 U-Net
# 0.95 s; measured 2026-12-03, AMD EPYC, beside another job), over 256 image + 333 text tokens in each of the 24
# joint attentions (154 text tokens since 2026-12-07, families.sd3.T5_TOKENS: see DemoTrainSettings).
# joint_attention_dim = the two CLIPs' concatenated hidden states (no T5, so nothing wider to pad them to);
# pos_embed_max_size 48 = 3 × the 16-token grid at 64 px, as SD3-medium's ratio (images up to 192 px).
SD3_TRANSFORMER_CONFIG: dict[str, Any] = {
    "sample_size": 32,  # latent side at 64-px images
    "patch_size": 2,
    "in_channels": VAE_CONFIG["latent_channels"],
    "out_channels": VAE_CONFIG["latent_channels"],
    "num_layers": 24,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 2 * TEXT_HIDDEN_SIZE,  # CLIP-L ⊕ CLIP-G hidden states
    "caption_projection_dim": 2 * 16,  # = the width, as SD3 (1536)
    "pooled_projection_dim": 2 * TEXT_ENCODER_CONFIG["projection_dim"],  # CLIP-L ⊕ CLIP-G pooled projections
    "pos_embed_max_size": 48,
}

# SD3-medium's scheduler/scheduler_config.json (rectified flow, timestep shift 3.0).
SD3_SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0}

# SD1.5's scheduler_config.json (PNDM; the upstream extractor keeps it, docs/paper.md §2.1).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

# SDXL-base-1.0's scheduler_config.json (Euler, "leading" spacing, docs/paper.md §2.1).
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ConfigError(f"unknown demo architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    return arch


@contextlib.contextmanager
def seeded_init(seed: int, *keys: object) -> Iterator[None]:
    """Seed torch's global RNG for a module constructor (diffusers/transformers initialise weights from
    it) without disturbing the caller's RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *keys))
        yield


def is_dit(arch: str) -> bool:
    """Whether ``arch``'s denoiser is a diffusion transformer (``pipe.transformer``) rather than a U-Net."""
    return check_arch(arch) in DIT_ARCHS


def unet_config(arch: str) -> dict[str, Any]:
    if is_dit(arch):
        raise ConfigError(f"demo architecture {arch!r} has a transformer, not a U-Net (see transformer_config)")
    return dict(SD15_UNET_CONFIG if arch == "sd15" else SDXL_UNET_CONFIG)


def transformer_config(arch: str) -> dict[str, Any]:
    if not is_dit(arch):
        raise ConfigError(f"demo architecture {arch!r} has a U-Net, not a transformer (see unet_config)")
    return dict(SD3_TRANSFORMER_CONFIG)


def build_unet(arch: str, seed: int = 0):
    """A randomly initialised ``UNet2DConditionModel`` for ``arch``.

    Input (B, 4, h, w) latents (h = w = image_size / 2), timestep (B,), encoder_hidden_states
    (B, 77, 32) for sd15 / (B, 77, 64) for sdxl; sdxl also needs ``added_cond_kwargs`` with
    ``text_embeds`` (B, 32) and ``time_ids`` (B, 6). Output (B, 4, h, w) predicted noise.
    """
    from diffusers import UNet2DConditionModel

    with seeded_init(seed, arch, "unet"):
        return UNet2DConditionModel(**unet_config(arch))


def build_transformer(arch: str, seed: int = 0):
    """A randomly initialised ``SD3Transformer2DModel`` for ``arch`` (sd3).

    Input ``hidden_states`` (B, 4, h, w) latents (h = w = image_size / 2, a multiple of 2), ``timestep`` (B,)
    float σ·1000, ``encoder_hidden_states`` (B, L, 64) with L = 77 + 77 = 154 from the sd3 family's encode_prompt,
    ``pooled_projections`` (B, 64). Output (B, 4, h, w): the predicted velocity ε − x₀.
    """
    from diffusers import SD3Transformer2DModel

    with seeded_init(seed, arch, "transformer"):
        return SD3Transformer2DModel(**transformer_config(arch))


def build_denoiser(arch: str, seed: int = 0):
    """The denoiser of ``arch``: :func:`build_transformer` for DiT archs, else :func:`build_unet`."""
    return build_transformer(arch, seed) if is_dit(arch) else build_unet(arch, seed)


# The pipeline class of each demo architecture (random_init_pipeline builds these).
PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                    "sd3": "StableDiffusion3Pipeline"}


def listing_denoiser(arch: str):
    """(denoiser on the meta device, default text tokens, VAE factor) of a demo architecture, without building
    or training anything: what :func:`diffact.models.configs.listing_denoiser` gives for a saved folder."""
    import torch

    from diffact.families.registry import family_of

    with torch.device("meta"):
        model = build_denoiser(arch)
    configs = {"model_index": {"_class_name": PIPELINE_CLASSES[arch]}, "tokenizer": {"model_max_length": 77}}
    return model, family_of(model).text_tokens(configs.get), VAE_DOWNSAMPLING_FACTOR


def build_vae(arch: str, seed: int = 0):
    """A randomly initialised ``AutoencoderKL``: (B, 3, 64, 64) in [-1, 1] <-> (B, 4, 32, 32) latents
    (sd3: with SD3's ``shift_factor``, a placeholder until calibrated)."""
    from diffusers import AutoencoderKL

    extra = {"shift_factor": SD3_VAE_SHIFT_PLACEHOLDER} if is_dit(arch) else {}
    with seeded_init(seed, arch, "vae"):
        return AutoencoderKL(**VAE_CONFIG, **extra)


def text_encoder_config():
    from transformers import CLIPTextConfig

    from diffact.models.tokenizer import special_token_ids, vocab_size

    return CLIPTextConfig(vocab_size=vocab_size(), **TEXT_ENCODER_CONFIG, **special_token_ids())


def build_text_encoder(arch: str, seed: int = 0, with_projection: bool = False, name: str | None = None):
    """A randomly initialised tiny CLIP text encoder: token ids (B, 77) -> hidden states (B, 77, 32)
    (and, ``with_projection``, a pooled (B, 32) ``text_embeds``, SDXL's ``text_encoder_2`` and both of SD3's
    CLIPs). ``name`` is the pipeline component it becomes (seeds it); default ``text_encoder_2`` with a
    projection, else ``text_encoder``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    name = name or ("text_encoder_2" if with_projection else "text_encoder")
    with seeded_init(seed, check_arch(arch), name):
        model = cls(text_encoder_config())
    return model.eval()


def build_scheduler(arch: str):
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, PNDMScheduler

    if check_arch(arch) == "sd15":
        return PNDMScheduler(**SD15_SCHEDULER_CONFIG)
    if arch == "sd3":
        return FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER_CONFIG)
    return EulerDiscreteScheduler(**SDXL_SCHEDULER_CONFIG)


def random_init_pipeline(arch: str, seed: int = 0):
    """The demo pipeline of ``arch`` with seeded random (untrained) weights, in memory, fp32, on CPU.

    sd15 -> ``StableDiffusionPipeline``; sdxl -> ``StableDiffusionXLPipeline``; sd3 ->
    ``StableDiffusion3Pipeline`` (no T5: ``text_encoder_3`` and ``tokenizer_3`` None). The VAE keeps the
    placeholder scaling factor 0.18215 (and sd3's shift 0.0) until ``train.calibrate_latent_scale`` sets it.
    """
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from diffact.models.tokenizer import OPENCLIP_PAD_TOKEN, build_clip_tokenizer

    if is_dit(arch):
        # SD3-medium's tokenizer pads with <|endoftext|>, its tokenizer_2 (OpenCLIP bigG) with "!" (hub configs).
        return StableDiffusion3Pipeline(
            transformer=build_transformer(arch, seed),
            scheduler=build_scheduler(arch),
            vae=build_vae(arch, seed),
            text_encoder=build_text_encoder(arch, seed, with_projection=True, name="text_encoder"),
            tokenizer=build_clip_tokenizer(),
            text_encoder_2=build_text_encoder(arch, seed, with_projection=True, name="text_encoder_2"),
            tokenizer_2=build_clip_tokenizer(OPENCLIP_PAD_TOKEN),
            text_encoder_3=None,
            tokenizer_3=None,
        )
    common = dict(
        vae=build_vae(arch, seed),
        text_encoder=build_text_encoder(arch, seed),
        tokenizer=build_clip_tokenizer(),
        unet=build_unet(arch, seed),
        scheduler=build_scheduler(arch),
        feature_extractor=None,
        image_encoder=None,
    )
    if arch == "sd15":
        return StableDiffusionPipeline(**common, safety_checker=None, requires_safety_checker=False)
    return StableDiffusionXLPipeline(
        **common,
        text_encoder_2=build_text_encoder(arch, seed, with_projection=True),
        tokenizer_2=build_clip_tokenizer(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def save_pipeline(pipe, out: str | Path) -> Path:
    """Write ``pipe`` as a standard diffusers folder (model_index.json + one sub-folder per component,
    safetensors weights), atomically: nothing appears at ``out`` unless the whole save succeeded."""
    from diffact.utils.io import atomic_dir

    out = Path(out)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    log.info("saved %s to %s", type(pipe).__name__, out)
    return out


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
